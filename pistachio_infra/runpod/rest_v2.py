"""RunPod REST API v2 adapter (httpx): the primary way the tool talks to RunPod.

Spec: the v2 OpenAPI document (copied into tests/runpod/data for the schema tests). Errors are RFC 9457
problem+json and map to the port's errors in `faults.error_for_status`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from . import retry
from .faults import FIX_TRANSIENT, error_for_status, one_line, parse_retry_after
from .port import (
    ConflictError,
    CpuFlavor,
    CpuPodRequest,
    DataCenterStock,
    GpuType,
    NetworkVolume,
    NotFoundError,
    Pod,
    PodRequest,
    PodStatus,
    RunPodApiError,
    Stock,
    Template,
    TransientError,
    ValidationError,
)
from .retry import DEFAULT_POLICY, RetryPolicy

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class RestV2Api:
    """`RunPodApi` over REST v2. `base_url` ends in /v2, e.g. https://api.runpod.io/v2."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        if not api_key:
            raise ValidationError("no RunPod API key given", "export RUNPOD_API_KEY=... (RunPod console → API Keys)")
        self._key = api_key
        self._policy = policy
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:  # never show the key
        return f"RestV2Api({str(self._client.base_url)!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RestV2Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport --------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        """One HTTP request, no retries. Returns the decoded JSON body (None for 204)."""
        what = f"{method} /v2/{path}"
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{what}: timed out ({type(exc).__name__})", FIX_TRANSIENT) from None
        except httpx.TransportError as exc:
            msg = one_line(f"{what}: connection failed: {type(exc).__name__}: {exc}", self._key)
            raise TransientError(msg, FIX_TRANSIENT) from None
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise TransientError(
                    f"{what}: HTTP {response.status_code} with a body that is not JSON", FIX_TRANSIENT
                ) from None
        raise self._error(what, response)

    def _error(self, what: str, response: httpx.Response) -> RunPodApiError:
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("message") or body.get("title") or "")
            errors = body.get("errors")
            if isinstance(errors, list) and errors:
                detail = (
                    f"{detail} ({'; '.join(str(e) for e in errors[:5])})"
                    if detail
                    else "; ".join(str(e) for e in errors[:5])
                )
        elif response.text:
            detail = response.text[:200]
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return error_for_status(response.status_code, what, detail, retry_after, secret=self._key)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        """One request under the retry policy (safe for reads, idempotent writes and deletes)."""
        return retry.call(lambda: self._send(method, path, **kw), self._policy)

    def _get_or_none(self, path: str) -> Any:
        try:
            return self._call("GET", path)
        except NotFoundError:
            return None

    # --- GPU catalog ------------------------------------------------------------------------------------

    def list_gpu_types(self) -> list[GpuType]:
        """Price per cloud, and SECURE-cloud pod stock overall and per data center."""
        body = self._call(
            "GET", "catalog/gpus", params={"include": "AVAILABILITY", "product": "POD", "cloud": "SECURE"}
        )
        gpus = []
        for g in body.get("gpus", []):
            if g.get("id") in (None, "unknown"):
                continue
            price = g.get("price") or {}
            gpus.append(
                GpuType(
                    id=g["id"],
                    name=g.get("name") or g["id"],
                    memory_gb=int(g.get("memory") or 0),
                    secure_price=price.get("secure") if g.get("secure", True) else None,
                    community_price=price.get("community") if g.get("community", True) else None,
                    stock=_stock(g.get("availability")),
                    data_centers=[
                        DataCenterStock(data_center_id=dc["id"], stock=_stock(dc.get("availability")))
                        for dc in g.get("dataCenters") or []
                    ],
                )
            )
        return gpus

    # --- CPU catalog and CPU pods -----------------------------------------------------------------------

    def list_cpu_flavors(self, vcpu_count: int = 2) -> list[CpuFlavor]:
        """Every CPU flavour with its price per vCPU-hour, and POD stock for pods of `vcpu_count` vCPUs."""
        body = self._call("GET", "catalog/cpus",
                          params={"include": "AVAILABILITY", "product": "POD", "vcpuCount": str(vcpu_count)})
        out = []
        for c in body.get("cpus", []):
            vcpu, price = c.get("vcpu") or {}, c.get("price") or {}
            out.append(CpuFlavor(
                id=c["id"], name=c.get("name") or c["id"], group=c.get("group") or "",
                vcpu_min=int(vcpu.get("min") or 2), vcpu_max=int(vcpu.get("max") or 2),
                ram_gb_per_vcpu=float(c.get("ramGbPerVcpu") or 0.0),
                price_per_vcpu_hr=float(price.get("securePerVcpu") or 0.0), stock=_stock(c.get("availability")),
                data_centers=[DataCenterStock(data_center_id=dc["id"], stock=_stock(dc.get("availability")))
                              for dc in c.get("dataCenters") or []],
            ))
        return out

    def create_cpu_pod(self, request: CpuPodRequest) -> Pod:
        """POST /v2/pods with `cpu: {id, vcpuCount}`; idempotent by name like `create_pod`."""
        body = _cpu_create_body(request)
        return retry.create_idempotently(
            lambda: _pod(self._send("POST", "pods", json=body)), self.find_pod_by_name, request.name, self._policy
        )

    # --- pods -------------------------------------------------------------------------------------------

    def create_pod(self, request: PodRequest) -> Pod:
        body = _create_body(request)
        return retry.create_idempotently(
            lambda: _pod(self._send("POST", "pods", json=body)), self.find_pod_by_name, request.name, self._policy
        )

    def get_pod(self, pod_id: str) -> Pod | None:
        data = self._get_or_none(f"pods/{_seg(pod_id)}")
        if data is None:
            return None
        pod = _pod(data)
        return None if pod.status == PodStatus.TERMINATED else pod

    def list_pods(self) -> list[Pod]:
        pods = [_pod(p) for p in self._call("GET", "pods").get("pods", [])]
        return [p for p in pods if p.status != PodStatus.TERMINATED]

    def find_pod_by_name(self, name: str) -> Pod | None:
        return next((p for p in self.list_pods() if p.name == name), None)

    def update_pod(self, pod_id: str, *, image: str | None = None, env: dict[str, str] | None = None) -> Pod:
        body: dict[str, Any] = {}
        if image is not None:
            body["image"] = image
        if env is not None:
            body["env"] = env
        if not body:
            raise ValidationError("update_pod: nothing to change", "pass image= and/or env=")
        return _pod(self._call("PATCH", f"pods/{_seg(pod_id)}", json=body))

    def stop_pod(self, pod_id: str) -> None:
        self._action(pod_id, "stop", done={PodStatus.EXITED})

    def start_pod(self, pod_id: str) -> None:
        self._action(pod_id, "start", done={PodStatus.PROVISIONING, PodStatus.STARTING, PodStatus.RUNNING})

    def _action(self, pod_id: str, action: str, done: set[PodStatus]) -> None:
        try:
            self._call("POST", f"pods/{_seg(pod_id)}/action", json={"action": action})
        except ConflictError:
            # 409: not valid in the current state. Fine if the pod is already where we want it (e.g. a retry
            # after a 5xx that had in fact worked); otherwise the conflict stands.
            pod = self.get_pod(pod_id)
            if pod is None or pod.status not in done:
                raise

    def terminate_pod(self, pod_id: str) -> None:
        try:
            self._call("DELETE", f"pods/{_seg(pod_id)}")
        except NotFoundError:
            return  # already gone: terminate is idempotent

    # --- network volumes --------------------------------------------------------------------------------

    def create_volume(self, name: str, size_gb: int, data_center_id: str) -> NetworkVolume:
        body = {"name": name, "size": size_gb, "dataCenter": data_center_id}
        # Not retried blindly: a repeat could make a second volume. A lookup by name recovers a created one.
        return _volume(self._create_by_name(body, "network-volumes", name, self._find_volume_by_name))

    def get_volume(self, volume_id: str) -> NetworkVolume | None:
        data = self._get_or_none(f"network-volumes/{_seg(volume_id)}")
        return None if data is None else _volume(data)

    def list_volumes(self) -> list[NetworkVolume]:
        return [_volume(v) for v in self._call("GET", "network-volumes").get("networkVolumes", [])]

    def update_volume(self, volume_id: str, *, name: str | None = None, size_gb: int | None = None) -> NetworkVolume:
        body: dict[str, Any] = {k: v for k, v in (("name", name), ("size", size_gb)) if v is not None}
        if not body:
            raise ValidationError("update_volume: nothing to change", "pass name= and/or size_gb=")
        return _volume(self._call("PATCH", f"network-volumes/{_seg(volume_id)}", json=body))

    def delete_volume(self, volume_id: str) -> None:
        try:
            self._call("DELETE", f"network-volumes/{_seg(volume_id)}")
        except NotFoundError:
            return

    # --- templates --------------------------------------------------------------------------------------

    def create_template(self, template: Template) -> Template:
        body = _template_body(template) | {"name": template.name, "image": template.image}
        return _template(self._create_by_name(body, "templates", template.name, self._find_template_by_name))

    def get_template(self, template_id: str) -> Template | None:
        data = self._get_or_none(f"templates/{_seg(template_id)}")
        return None if data is None else _template(data)

    def list_templates(self) -> list[Template]:
        return [_template(t) for t in self._call("GET", "templates").get("templates", [])]

    def update_template(self, template: Template) -> Template:
        body = _template_body(template) | {"name": template.name, "image": template.image}
        return _template(self._call("PATCH", f"templates/{_seg(template.id)}", json=body))

    def delete_template(self, template_id: str) -> None:
        try:
            self._call("DELETE", f"templates/{_seg(template_id)}")
        except NotFoundError:
            return

    # --- helpers ----------------------------------------------------------------------------------------

    def _create_by_name(
        self, body: dict[str, Any], path: str, name: str, named: Callable[[str], list[dict[str, Any]]]
    ) -> dict[str, Any]:
        """POST once; after a transient failure, adopt the resource of that name that this create made, else POST
        again. Names need not be unique on RunPod (the spec says so for volumes and forces nothing for templates),
        so the ones of that name that existed before are noted first and never adopted."""
        before = {r.get("id") for r in named(name)}

        def find(n: str) -> dict[str, Any] | None:
            return next((r for r in named(n) if r.get("id") not in before), None)

        return retry.create_idempotently(lambda: self._send("POST", path, json=body), find, name, self._policy)

    def _find_volume_by_name(self, name: str) -> list[dict[str, Any]]:
        volumes = self._call("GET", "network-volumes").get("networkVolumes", [])
        return [v for v in volumes if v.get("name") == name]

    def _find_template_by_name(self, name: str) -> list[dict[str, Any]]:
        templates = self._call("GET", "templates").get("templates", [])
        return [t for t in templates if t.get("name") == name]


# --- mapping between the port and the wire ------------------------------------------------------------------


def _seg(value: str) -> str:
    """A path segment: ids only. Anything else would change which URL is called."""
    if not value or not all(c.isalnum() or c in "-_." for c in value):
        raise ValidationError(f"{value!r} is not a RunPod id", "pass the id as RunPod shows it (letters, digits)")
    return value


def _stock(value: Any) -> Stock:
    try:
        return Stock(str(value).upper())
    except ValueError:
        return Stock.NONE


def _create_body(r: PodRequest) -> dict[str, Any]:
    if r.interruptible:
        raise ValidationError(
            "REST v2 cannot rent interruptible (spot) pods: CreatePodRequest has no interruptible or bid field",
            "set interruptible=false, or use the GraphQL adapter (adapter='graphql', podRentInterruptable)",
        )
    if not r.image and not r.template_id:
        raise ValidationError("a pod needs an image or a template", "set image= or template_id=")
    if r.cloud not in ("SECURE", "COMMUNITY"):
        raise ValidationError(f"cloud {r.cloud!r} is not SECURE or COMMUNITY", "pick SECURE or COMMUNITY")
    body: dict[str, Any] = {
        "name": r.name,
        "cloud": r.cloud,
        "gpu": {"id": r.gpu_type_id, "count": r.gpu_count},
        "disk": r.container_disk_gb,
        "ports": list(r.ports),
        "env": dict(r.env),
        "startSsh": r.start_ssh,
    }
    _add_optional(body, r)
    if not r.network_volume_id and r.volume_gb:
        body["mounts"] = {"persistent": {"size": r.volume_gb, "path": r.volume_mount_path}}
    # r.min_memory_gb: REST v2 has no memory constraint on create; the caller picks GPU classes whose machines
    # have enough RAM (catalog), so it is not sent.
    return body


def _cpu_create_body(r: CpuPodRequest) -> dict[str, Any]:
    if not r.image and not r.template_id:
        raise ValidationError("a pod needs an image or a template", "set image= or template_id=")
    if r.vcpu_count & (r.vcpu_count - 1):
        raise ValidationError(f"vcpu_count {r.vcpu_count} is not a power of two",
                              "pick 2, 4, 8, … within the flavour's vCPU range")
    body: dict[str, Any] = {
        "name": r.name,
        "cloud": "SECURE",
        "cpu": {"id": r.flavor_id, "vcpuCount": r.vcpu_count},
        "disk": r.container_disk_gb,
        "ports": list(r.ports),
        "env": dict(r.env),
        "startSsh": r.start_ssh,
    }
    _add_optional(body, r)
    return body


def _add_optional(body: dict[str, Any], r: PodRequest | CpuPodRequest) -> None:
    """The create fields GPU and CPU pods share that are sent only when set."""
    if r.args:
        body["args"] = r.args
    if r.image:
        body["image"] = r.image
    if r.template_id:
        body["templateId"] = r.template_id
    if r.data_center_ids:
        body["dataCenterIds"] = list(r.data_center_ids)
    if r.network_volume_id:
        body["mounts"] = {"network": [{"volumeId": r.network_volume_id, "path": r.volume_mount_path}]}


def _pod(d: dict[str, Any]) -> Pod:
    if not isinstance(d, dict) or "id" not in d:
        raise TransientError("RunPod answered a pod without an id", FIX_TRANSIENT)
    gpu = d.get("gpu") or {}
    cpu = d.get("cpu") or {}
    mounts = d.get("mounts") or {}
    network = mounts.get("network") or []
    direct = (d.get("ssh") or {}).get("direct") or {}
    runtime = d.get("runtime") or {}
    try:
        status = PodStatus(d.get("status", "PROVISIONING"))
    except ValueError:
        status = PodStatus.ERROR
    return Pod(
        id=d["id"],
        name=d.get("name") or "",
        status=status,
        gpu_type_id=gpu.get("id"),
        gpu_count=int(gpu.get("count") or 1) if gpu else 0,
        cpu_flavor_id=cpu.get("id"),
        vcpu_count=int(cpu["vcpuCount"]) if cpu.get("vcpuCount") else None,
        memory_gb=int(cpu["memory"]) if cpu.get("memory") else None,
        cost_per_hr=float(d.get("cost") or 0.0),
        data_center_id=d.get("dataCenterId"),
        network_volume_id=network[0].get("volumeId") if network else None,
        image=d.get("image"),
        env=dict(d.get("env") or {}),
        ssh_host=direct.get("host") or None,
        ssh_port=int(direct["port"]) if direct.get("port") else None,
        ssh_user=direct.get("username") or "root",
        http_ports={
            int(p["private"]): int(p["public"])
            for p in runtime.get("ports") or []
            if p.get("type") == "http" and p.get("private") and p.get("public")
        },
        interruptible=False,
        uptime_s=runtime.get("uptime"),
        created_at=_when(d.get("createdAt")),
    )


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _volume(d: dict[str, Any]) -> NetworkVolume:
    return NetworkVolume(
        id=d["id"],
        name=d.get("name") or "",
        size_gb=int(d["size"]),
        data_center_id=d.get("dataCenter") or d.get("dataCenterId") or "",
    )


def _template_body(t: Template) -> dict[str, Any]:
    body: dict[str, Any] = {"disk": t.container_disk_gb, "ports": list(t.ports), "env": dict(t.env)}
    if t.volume_gb:
        if t.volume_gb < 10:
            raise ValidationError(
                f"template volume {t.volume_gb} GB is below RunPod's 10 GB floor",
                "use volume_gb=0 (none) or at least 10",
            )
        body["mounts"] = {"persistent": {"size": t.volume_gb, "path": t.volume_mount_path}}
    return body


def _template(d: dict[str, Any]) -> Template:
    persistent = (d.get("mounts") or {}).get("persistent") or {}
    return Template(
        id=d["id"],
        name=d.get("name") or "",
        image=d.get("image") or "",
        container_disk_gb=int(d.get("disk") or 0),
        volume_gb=int(persistent.get("size") or 0),
        volume_mount_path=persistent.get("path") or "/workspace",
        ports=list(d.get("ports") or []),
        env=dict(d.get("env") or {}),
    )
