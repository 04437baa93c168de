"""RunPod GraphQL adapter over the `runpod` SDK 1.12 (GraphQL retires early 2027; REST v2 is primary).

What the SDK does that we must undo or work around (reference: runpod-api.md §1):
- it is slow to import (1.4 s): imported on first use, never at module top;
- it never reads RUNPOD_API_KEY: `runpod.api_key` is set from our key for each call;
- it reads RUNPOD_API_BASE_URL on every call: set for the call (under a lock, then restored);
- it pastes arguments into the query text unescaped: every string we hand it is escaped first, and our own
  queries (operations the SDK lacks) build literals with a JSON-compatible escaper;
- a 429/5xx answer without an `errors` key surfaces as KeyError/TypeError: mapped to TransientError;
- business errors come as QueryError with free text: mapped by `faults.error_for_message`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import retry
from .faults import FIX_AUTH, FIX_TRANSIENT, FIX_VALIDATION, error_for_message, one_line
from .port import (
    AuthError,
    CpuFlavor,
    CpuPodRequest,
    DataCenterStock,
    GpuType,
    InsufficientBalanceError,
    NetworkVolume,
    NoCapacityError,
    NotFoundError,
    Pod,
    PodRequest,
    PodStatus,
    RateLimitedError,
    RunPodApiError,
    Stock,
    Template,
    TransientError,
    ValidationError,
)
from .retry import DEFAULT_POLICY, RetryPolicy

T = TypeVar("T")

SDK_RANGE = ">=1.12,<1.13"
_SDK_LOCK = threading.RLock()  # the SDK's URL and key are process-global

POD_FIELDS = """id name desiredStatus podType costPerHr gpuCount imageName env containerDiskInGb volumeInGb
  volumeMountPath networkVolumeId ports
  machine { gpuTypeId dataCenterId gpuDisplayName }
  runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } }"""
TEMPLATE_FIELDS = "id name imageName containerDiskInGb volumeInGb volumeMountPath ports env { key value } isServerless"
VOLUME_FIELDS = "id name size dataCenterId"

# Errors that say nothing about whether a pod action was valid in the pod's state.
_NOT_ABOUT_STATE = (TransientError, RateLimitedError, NoCapacityError, AuthError, InsufficientBalanceError)

_STATUS = {
    "CREATED": PodStatus.PROVISIONING,
    "RUNNING": PodStatus.RUNNING,
    "RESTARTING": PodStatus.STARTING,
    "EXITED": PodStatus.EXITED,
    "PAUSED": PodStatus.EXITED,
    "DEAD": PodStatus.ERROR,
    "TERMINATED": PodStatus.TERMINATED,
}


def load_sdk() -> Any:
    """Import the runpod SDK (slow) and check it speaks the GraphQL dialect this adapter was written for."""
    import runpod

    version = getattr(runpod, "__version__", "?")
    if not str(version).startswith("1.12."):
        from ..errors import MissingToolError

        raise MissingToolError(
            f"runpod SDK {version} is installed; the GraphQL adapter needs runpod{SDK_RANGE}",
            f"run `uv sync` (or pip install 'runpod{SDK_RANGE}'), or use the REST adapter",
        )
    return runpod


class GraphQLApi:
    """`RunPodApi` over GraphQL via the runpod SDK 1.12. `base_url` is what the SDK calls RUNPOD_API_BASE_URL
    (it appends /graphql), e.g. https://api.runpod.io or http://127.0.0.1:PORT."""

    def __init__(self, base_url: str, api_key: str, *, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        if not api_key:
            raise ValidationError("no RunPod API key given", "export RUNPOD_API_KEY=... (RunPod console → API Keys)")
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._policy = policy
        self._sdk = load_sdk()

    def __repr__(self) -> str:  # never show the key
        return f"GraphQLApi({self._base!r})"

    def close(self) -> None:
        pass

    # --- transport --------------------------------------------------------------------------------------

    def _once(self, what: str, fn: Callable[[Any], T]) -> T:
        """One SDK call with our URL and key, SDK exceptions turned into port errors. No retries."""
        import requests

        sdk = self._sdk
        with _SDK_LOCK:
            saved_url, saved_key = os.environ.get("RUNPOD_API_BASE_URL"), sdk.api_key
            os.environ["RUNPOD_API_BASE_URL"] = self._base
            sdk.api_key = self._key
            try:
                return fn(sdk)
            except sdk.error.AuthenticationError as exc:
                raise AuthError(one_line(f"{what}: {exc.message}", self._key), FIX_AUTH, 401) from None
            except sdk.error.QueryError as exc:  # never include exc.query: it carries env values
                raise error_for_message(what, str(exc.message), self._key) from None
            except requests.Timeout:
                raise TransientError(f"{what}: timed out", FIX_TRANSIENT) from None
            except requests.RequestException as exc:  # connection errors, non-JSON bodies
                msg = one_line(f"{what}: {type(exc).__name__}: {exc}", self._key)
                raise TransientError(msg, FIX_TRANSIENT) from None
            except (KeyError, TypeError, IndexError) as exc:
                # The SDK indexes raw["data"][...] without checking: a 429/5xx whose JSON body has no
                # "errors" (or a null data field) ends up here.
                raise TransientError(
                    one_line(f"{what}: RunPod answered without data ({type(exc).__name__}: {exc})", self._key),
                    FIX_TRANSIENT,
                ) from None
            except ValueError as exc:  # the SDK's own argument checks (unknown GPU id, cloud type)
                raise ValidationError(one_line(f"{what}: {exc}", self._key), FIX_VALIDATION) from None
            finally:
                if saved_url is None:
                    os.environ.pop("RUNPOD_API_BASE_URL", None)
                else:
                    os.environ["RUNPOD_API_BASE_URL"] = saved_url
                sdk.api_key = saved_key

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        return retry.call(lambda: self._once(what, fn), self._policy)

    def _query(self, what: str, query: str, field: str) -> Any:
        """Our own query through the SDK's transport; returns data[field] (may be None)."""
        return self._call(what, lambda sdk: sdk.api.graphql.run_graphql_query(query)["data"][field])

    # --- GPU catalog ------------------------------------------------------------------------------------

    def list_gpu_types(self) -> list[GpuType]:
        """Price per cloud; SECURE-cloud stock overall and per data center (lowestPrice per data center)."""
        centers = self._query("dataCenters", "query dataCenters { dataCenters { id name listed } }", "dataCenters")
        dc_ids = [c["id"] for c in centers or [] if c.get("id") and c.get("listed", True) is not False]
        per_dc = " ".join(
            f"dc{i}: lowestPrice(input: {{gpuCount: 1, secureCloud: true, dataCenterId: {_v(dc)}}}) {{ stockStatus }}"
            for i, dc in enumerate(dc_ids)
        )
        query = (
            "query GpuTypes { gpuTypes { id displayName memoryInGb secureCloud communityCloud securePrice "
            "communityPrice lowestPrice(input: {gpuCount: 1, secureCloud: true}) { stockStatus uninterruptablePrice }"
            f" {per_dc} }} }}"
        )
        raw = self._query("gpuTypes", query, "gpuTypes") or []
        gpus = []
        for g in raw:
            if g.get("id") in (None, "unknown"):
                continue
            centers_stock = [
                DataCenterStock(data_center_id=dc, stock=_stock(lp.get("stockStatus")))
                for i, dc in enumerate(dc_ids)
                if (lp := g.get(f"dc{i}")) and lp.get("stockStatus") is not None
            ]
            overall = _stock((g.get("lowestPrice") or {}).get("stockStatus"))
            if overall == Stock.NONE and centers_stock:
                overall = max((c.stock for c in centers_stock), key=_STOCK_ORDER.index)
            gpus.append(
                GpuType(
                    id=g["id"],
                    name=g.get("displayName") or g["id"],
                    memory_gb=int(g.get("memoryInGb") or 0),
                    secure_price=g.get("securePrice") if g.get("secureCloud", True) else None,
                    community_price=g.get("communityPrice") if g.get("communityCloud", True) else None,
                    stock=overall,
                    data_centers=centers_stock,
                )
            )
        return gpus

    # --- CPU pods: REST v2 only -------------------------------------------------------------------------

    def list_cpu_flavors(self, vcpu_count: int = 2) -> list[CpuFlavor]:
        raise ValidationError("CPU flavours with prices and stock come from REST v2 (GET /v2/catalog/cpus); GraphQL "
                              "cpuFlavors has no price or stock", "use the REST v2 adapter (the default)")

    def create_cpu_pod(self, request: CpuPodRequest) -> Pod:
        raise ValidationError("this tool creates CPU pods through REST v2 only",
                              "use the REST v2 adapter (the default)")

    # --- pods -------------------------------------------------------------------------------------------

    def create_pod(self, request: PodRequest) -> Pod:
        if not request.image and not request.template_id:
            raise ValidationError("a pod needs an image or a template", "set image= or template_id=")
        if request.cloud not in ("SECURE", "COMMUNITY", "ALL"):
            raise ValidationError(f"cloud {request.cloud!r} is not SECURE, COMMUNITY or ALL", "pick one of those")
        data_centers: list[str | None] = list(request.data_center_ids) or [None]

        def create_once() -> Pod:
            # GraphQL places a pod in one data center per call; REST takes the whole preference list. Walk the
            # list here so both adapters mean the same thing (no capacity only when none of them has any).
            failure: NoCapacityError | None = None
            for dc in data_centers:
                try:
                    pod_id = self._deploy(request, dc)
                except NoCapacityError as exc:
                    failure = exc
                    continue
                return self.get_pod(pod_id) or _placeholder_pod(pod_id, request, dc)
            assert failure is not None
            raise failure

        return retry.create_idempotently(create_once, self.find_pod_by_name, request.name, self._policy)

    def _deploy(self, r: PodRequest, dc: str | None) -> str:
        """One create request (no retries); returns the new pod's id."""
        if r.interruptible:
            return self._rent_interruptible(r, dc)
        created = self._once(
            "podFindAndDeployOnDemand",
            lambda sdk: sdk.create_pod(
                name=_lit(r.name),
                image_name=_lit(r.image or ""),
                gpu_type_id=_lit(r.gpu_type_id),
                cloud_type=r.cloud,
                support_public_ip=True,
                start_ssh=r.start_ssh,
                data_center_id=_lit(dc) if dc else None,
                gpu_count=r.gpu_count,
                volume_in_gb=0 if r.network_volume_id else (r.volume_gb or 0),
                container_disk_in_gb=r.container_disk_gb,
                min_memory_in_gb=r.min_memory_gb or 1,
                docker_args=_lit(r.args) if r.args else None,  # "" would replace the image's start (no sshd)
                ports=_lit(",".join(r.ports)),
                volume_mount_path=_lit(r.volume_mount_path),
                env={_lit(k): _lit(v) for k, v in r.env.items()},
                template_id=_lit(r.template_id) if r.template_id else None,
                network_volume_id=_lit(r.network_volume_id) if r.network_volume_id else None,
            ),
        )
        if not created or not created.get("id"):
            # data.podFindAndDeployOnDemand null without errors: unknown outcome, so look up by name.
            raise TransientError("podFindAndDeployOnDemand answered no pod", FIX_TRANSIENT)
        return str(created["id"])

    def _rent_interruptible(self, r: PodRequest, dc: str | None) -> str:
        bid = r.bid_per_gpu
        if bid is None:
            gpu = self._once("gpuTypes", lambda sdk: sdk.get_gpu(_lit(r.gpu_type_id), r.gpu_count))
            bid = (gpu.get("lowestPrice") or {}).get("minimumBidPrice")
            if bid is None:
                raise NoCapacityError(
                    f"no spot market for {r.gpu_type_id} right now",
                    "rent it on demand (interruptible=false) or pick another GPU class",
                )
        fields: dict[str, Any] = {
            "bidPerGpu": float(bid),
            "cloudType": _Enum(r.cloud),
            "gpuCount": r.gpu_count,
            "volumeInGb": 0 if r.network_volume_id else (r.volume_gb or 0),
            "containerDiskInGb": r.container_disk_gb,
            "minVcpuCount": 1,
            "minMemoryInGb": r.min_memory_gb or 1,
            "gpuTypeId": r.gpu_type_id,
            "name": r.name,
            "imageName": r.image or "",
            "ports": ",".join(r.ports),
            "volumeMountPath": r.volume_mount_path,
            "env": [{"key": k, "value": v} for k, v in r.env.items()],
            "startSsh": r.start_ssh,
            "supportPublicIp": True,
            "dataCenterId": dc,
        }
        if r.network_volume_id:
            fields["networkVolumeId"] = r.network_volume_id
        if r.template_id:
            fields["templateId"] = r.template_id
        if r.args:
            fields["dockerArgs"] = r.args
        query = f"mutation {{ podRentInterruptable(input: {_v(fields)}) {{ id }} }}"
        created = self._once(
            "podRentInterruptable", lambda sdk: sdk.api.graphql.run_graphql_query(query)["data"]["podRentInterruptable"]
        )
        if not created or not created.get("id"):
            raise TransientError("podRentInterruptable answered no pod", FIX_TRANSIENT)
        return str(created["id"])

    def _raw_pod(self, pod_id: str) -> dict[str, Any] | None:
        query = f"query pod {{ pod(input: {{podId: {_v(pod_id)}}}) {{ {POD_FIELDS} }} }}"
        try:
            return self._query("pod", query, "pod")
        except NotFoundError:
            return None

    def get_pod(self, pod_id: str) -> Pod | None:
        raw = self._raw_pod(pod_id)
        pod = _pod(raw) if raw else None
        return None if pod is None or pod.status == PodStatus.TERMINATED else pod

    def list_pods(self) -> list[Pod]:
        me = self._query("myPods", f"query myPods {{ myself {{ pods {{ {POD_FIELDS} }} }} }}", "myself") or {}
        pods = [_pod(p) for p in me.get("pods") or []]
        return [p for p in pods if p.status != PodStatus.TERMINATED]

    def find_pod_by_name(self, name: str) -> Pod | None:
        return next((p for p in self.list_pods() if p.name == name), None)

    def update_pod(self, pod_id: str, *, image: str | None = None, env: dict[str, str] | None = None) -> Pod:
        if image is None and env is None:
            raise ValidationError("update_pod: nothing to change", "pass image= and/or env=")
        raw = self._raw_pod(pod_id)
        if raw is None:
            raise NotFoundError(f"podEditJob: no pod {pod_id}", "check the pod id (`pistachio-infra status`)")
        fields: dict[str, Any] = {
            "podId": pod_id,
            "imageName": image if image is not None else raw.get("imageName") or "",
            "containerDiskInGb": int(raw.get("containerDiskInGb") or 0),
        }
        if env is not None:
            fields["env"] = [{"key": k, "value": v} for k, v in env.items()]
        self._query("podEditJob", f"mutation {{ podEditJob(input: {_v(fields)}) {{ id }} }}", "podEditJob")
        pod = self.get_pod(pod_id)
        if pod is None:
            raise NotFoundError(f"podEditJob: pod {pod_id} is gone", "check the pod id (`pistachio-infra status`)")
        return pod

    def stop_pod(self, pod_id: str) -> None:
        self._action(pod_id, "podStop", lambda sdk: sdk.stop_pod(_lit(pod_id)), done={PodStatus.EXITED})

    def start_pod(self, pod_id: str) -> None:
        pod = self.get_pod(pod_id)
        if pod is None:
            raise NotFoundError(f"podResume: no pod {pod_id}", "check the pod id (`pistachio-infra status`)")
        if pod.status in (PodStatus.PROVISIONING, PodStatus.STARTING, PodStatus.RUNNING):
            return
        self._action(
            pod_id,
            "podResume",
            lambda sdk: sdk.resume_pod(_lit(pod_id), pod.gpu_count),
            done={PodStatus.PROVISIONING, PodStatus.STARTING, PodStatus.RUNNING},
        )

    def _action(self, pod_id: str, what: str, fn: Callable[[Any], Any], done: set[PodStatus]) -> None:
        try:
            self._call(what, fn)
        except RunPodApiError as exc:
            if isinstance(exc, _NOT_ABOUT_STATE):
                raise
            # GraphQL has no 409: an action that is not valid now is a business error. Fine if the pod is
            # already where we want it (e.g. a retry after a failure that had in fact worked).
            pod = self.get_pod(pod_id)
            if pod is None or pod.status not in done:
                raise

    def terminate_pod(self, pod_id: str) -> None:
        try:
            self._call("podTerminate", lambda sdk: sdk.terminate_pod(_lit(pod_id)))
        except NotFoundError:
            return
        except RunPodApiError as exc:
            if isinstance(exc, _NOT_ABOUT_STATE):
                raise
            if self.get_pod(pod_id) is not None:
                raise

    # --- network volumes (not in the SDK: raw GraphQL) --------------------------------------------------

    def create_volume(self, name: str, size_gb: int, data_center_id: str) -> NetworkVolume:
        fields = {"name": name, "size": int(size_gb), "dataCenterId": data_center_id}
        query = f"mutation {{ createNetworkVolume(input: {_v(fields)}) {{ {VOLUME_FIELDS} }} }}"

        def create_once() -> NetworkVolume:
            raw = self._once(
                "createNetworkVolume",
                lambda sdk: sdk.api.graphql.run_graphql_query(query)["data"]["createNetworkVolume"],
            )
            if not raw:
                raise TransientError("createNetworkVolume answered no volume", FIX_TRANSIENT)
            return _volume(raw)

        def find(n: str) -> NetworkVolume | None:
            return next((v for v in self.list_volumes() if v.name == n), None)

        return retry.create_idempotently(create_once, find, name, self._policy)

    def get_volume(self, volume_id: str) -> NetworkVolume | None:
        return next((v for v in self.list_volumes() if v.id == volume_id), None)

    def list_volumes(self) -> list[NetworkVolume]:
        me = self._call("myself", lambda sdk: sdk.get_user(api_key=self._key)) or {}
        return [_volume(v) for v in me.get("networkVolumes") or []]

    def update_volume(self, volume_id: str, *, name: str | None = None, size_gb: int | None = None) -> NetworkVolume:
        fields: dict[str, Any] = {"id": volume_id}
        fields |= {k: v for k, v in (("name", name), ("size", size_gb)) if v is not None}
        if len(fields) == 1:
            raise ValidationError("update_volume: nothing to change", "pass name= and/or size_gb=")
        query = f"mutation {{ updateNetworkVolume(input: {_v(fields)}) {{ {VOLUME_FIELDS} }} }}"
        raw = self._query("updateNetworkVolume", query, "updateNetworkVolume")
        if not raw:
            raise NotFoundError(f"updateNetworkVolume: no volume {volume_id}", "check the volume id")
        return _volume(raw)

    def delete_volume(self, volume_id: str) -> None:
        if self.get_volume(volume_id) is None:
            return
        query = f"mutation {{ deleteNetworkVolume(input: {_v({'id': volume_id})}) }}"
        try:
            self._query("deleteNetworkVolume", query, "deleteNetworkVolume")
        except NotFoundError:
            return

    # --- templates --------------------------------------------------------------------------------------

    def create_template(self, template: Template) -> Template:
        t = template

        def create_once() -> Template:
            raw = self._once(
                "saveTemplate",
                lambda sdk: sdk.create_template(
                    name=_lit(t.name),
                    image_name=_lit(t.image),
                    container_disk_in_gb=t.container_disk_gb,
                    volume_in_gb=t.volume_gb,
                    volume_mount_path=_lit(t.volume_mount_path),
                    ports=_lit(",".join(t.ports)),
                    env={_lit(k): _lit(v) for k, v in t.env.items()},
                ),
            )
            if not raw:
                raise TransientError("saveTemplate answered no template", FIX_TRANSIENT)
            return _template(raw)

        # names need not be unique: never adopt a template of this name that existed before this create
        before = {x.id for x in self.list_templates() if x.name == t.name}

        def find(n: str) -> Template | None:
            return next((x for x in self.list_templates() if x.name == n and x.id not in before), None)

        return retry.create_idempotently(create_once, find, t.name, self._policy)

    def get_template(self, template_id: str) -> Template | None:
        return next((t for t in self.list_templates() if t.id == template_id), None)

    def list_templates(self) -> list[Template]:
        query = f"query myTemplates {{ myself {{ podTemplates {{ {TEMPLATE_FIELDS} }} }} }}"
        me = self._query("podTemplates", query, "myself") or {}
        return [_template(t) for t in me.get("podTemplates") or [] if not t.get("isServerless")]

    def update_template(self, template: Template) -> Template:
        t = template
        fields = {
            "id": t.id,
            "name": t.name,
            "imageName": t.image,
            "dockerArgs": "",
            "containerDiskInGb": t.container_disk_gb,
            "volumeInGb": t.volume_gb,
            "volumeMountPath": t.volume_mount_path,
            "ports": ",".join(t.ports),
            "env": [{"key": k, "value": v} for k, v in t.env.items()],
            "isServerless": False,
            "startSsh": True,
            "isPublic": False,
            "readme": "",
        }
        query = f"mutation {{ saveTemplate(input: {_v(fields)}) {{ {TEMPLATE_FIELDS} }} }}"
        raw = self._query("saveTemplate", query, "saveTemplate")
        if not raw:
            raise NotFoundError(f"saveTemplate: no template {t.id}", "check the template id")
        return _template(raw)

    def delete_template(self, template_id: str) -> None:
        template = self.get_template(template_id)
        if template is None:
            return
        query = f"mutation {{ deleteTemplate(templateName: {_v(template.name)}) }}"
        try:
            self._query("deleteTemplate", query, "deleteTemplate")
        except NotFoundError:
            return


# --- GraphQL literals -------------------------------------------------------------------------------------


class _Enum(str):
    """An enum literal (written bare, e.g. cloudType: SECURE)."""


def _lit(value: str) -> str:
    """A string escaped for pasting between the double quotes the SDK writes around it."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


def _v(value: Any) -> str:
    """A GraphQL literal. JSON string escapes are GraphQL string escapes, so json.dumps quotes safely."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Enum):
        if not value.isidentifier():
            raise ValidationError(f"{value!r} is not a valid enum value", FIX_VALIDATION)
        return str(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_v(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_v(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no GraphQL literal for {type(value).__name__}")


# --- mapping ------------------------------------------------------------------------------------------------

_STOCK_ORDER = [Stock.NONE, Stock.LOW, Stock.MEDIUM, Stock.HIGH]


def _stock(value: Any) -> Stock:
    try:
        return Stock(str(value).upper())
    except ValueError:
        return Stock.NONE


def _pod(d: dict[str, Any]) -> Pod:
    runtime = d.get("runtime") or {}
    machine = d.get("machine") or {}
    status = _STATUS.get(str(d.get("desiredStatus")), PodStatus.ERROR)
    if status == PodStatus.RUNNING and not runtime:
        status = PodStatus.STARTING  # desired RUNNING, container not up yet (pulling, starting)
    ssh = (
        next(
            (
                p
                for p in runtime.get("ports") or []
                if p.get("privatePort") == 22 and p.get("isIpPublic") and p.get("type", "tcp") == "tcp"
            ),
            None,
        )
        if status == PodStatus.RUNNING
        else None
    )
    env: dict[str, str] = {}
    for item in d.get("env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    return Pod(
        id=d["id"],
        name=d.get("name") or "",
        status=status,
        gpu_type_id=machine.get("gpuTypeId"),
        gpu_count=int(d.get("gpuCount") or 1),
        cost_per_hr=float(d.get("costPerHr") or 0.0),
        data_center_id=machine.get("dataCenterId"),
        network_volume_id=d.get("networkVolumeId") or None,
        image=d.get("imageName"),
        env=env,
        ssh_host=ssh.get("ip") if ssh else None,
        ssh_port=int(ssh["publicPort"]) if ssh and ssh.get("publicPort") else None,
        http_ports={
            int(p["privatePort"]): int(p["publicPort"])
            for p in runtime.get("ports") or []
            if p.get("type") == "http" and p.get("privatePort") and p.get("publicPort")
        }
        if status == PodStatus.RUNNING
        else {},
        interruptible=d.get("podType") == "INTERRUPTABLE",
        uptime_s=runtime.get("uptimeInSeconds"),
    )


def _placeholder_pod(pod_id: str, r: PodRequest, dc: str | None) -> Pod:
    """What we know right after a create, for when the pod is not readable yet."""
    return Pod(
        id=pod_id,
        name=r.name,
        status=PodStatus.PROVISIONING,
        gpu_type_id=r.gpu_type_id,
        gpu_count=r.gpu_count,
        data_center_id=dc,
        network_volume_id=r.network_volume_id,
        image=r.image,
        env=dict(r.env),
        interruptible=r.interruptible,
    )


def _volume(d: dict[str, Any]) -> NetworkVolume:
    return NetworkVolume(
        id=d["id"], name=d.get("name") or "", size_gb=int(d["size"]), data_center_id=d.get("dataCenterId") or ""
    )


def _template(d: dict[str, Any]) -> Template:
    ports = d.get("ports") or ""
    return Template(
        id=d["id"],
        name=d.get("name") or "",
        image=d.get("imageName") or "",
        container_disk_gb=int(d.get("containerDiskInGb") or 0),
        volume_gb=int(d.get("volumeInGb") or 0),
        volume_mount_path=d.get("volumeMountPath") or "/workspace",
        ports=[p for p in (ports if isinstance(ports, list) else ports.split(",")) if p],
        env={e["key"]: e["value"] for e in d.get("env") or [] if isinstance(e, dict) and "key" in e},
    )
