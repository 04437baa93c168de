"""REST v2 (`/v2/...`), shaped like RunPod's OpenAPI document for the subset the tool uses.

Every authenticated answer carries RateLimit / RateLimit-Policy; errors are RFC 9457 problem+json with the real
status codes; request bodies are validated against the spec's schemas (422 with every violation listed).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import openapi
from .billing import BUCKETS, WindowError, pod_billing_report
from .catalog import availability_level, cuda_key
from .cloud import ACTIONS, ACTIVE, PUBLIC_IP, SERVER_ERROR, ApiError, CreateRequest, Principal, SandboxCloud
from .podhost import pod_user
from .store import PodRecord, TemplateRecord, VolumeRecord

Handler = Callable[[Request, Principal, Any], Awaitable[Response | tuple[int, Any]]]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def problem(status: int, detail: str, *, title: str | None = None, errors: list[str] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"title": title or ApiError.TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def http_port_public(pod: PodRecord, private: int) -> int:
    """The host port of an exposed http port (the pod's process binds it, see cloud.pod_env); other ports get a
    stable made-up public port (nothing listens there in the sandbox)."""
    mapped = pod.http_ports.get(str(private))
    if mapped:
        return mapped
    return 20000 + (sum(ord(c) for c in pod.id) * 131 + private * 17) % 40000


# --- shapes -----------------------------------------------------------------------------------------------------


def pod_json(cloud: SandboxCloud, pod: PodRecord) -> dict[str, Any]:
    running = pod.status == "RUNNING" and pod.ssh_port is not None
    has_ssh_port = "22/tcp" in pod.ports
    runtime = None
    direct = None
    if running:
        ports = []
        for spec in pod.ports:
            number, _, kind = spec.partition("/")
            if not number.isdigit():
                continue
            private = int(number)
            public = pod.ssh_port if private == 22 and kind == "tcp" else http_port_public(pod, private)
            ports.append({"private": private, "public": public, "type": kind or "tcp", "ip": PUBLIC_IP})
        runtime = {
            "uptime": int(time.time() - (pod.started_at or time.time())),
            "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(pod.gpu_count)],
            "cpu": {"util": 0},
            "memory": {"util": 0},
            "ports": ports,
        }
        if has_ssh_port:
            user = pod_user()
            direct = {"host": PUBLIC_IP, "port": pod.ssh_port, "username": user,
                      "command": f"ssh {user}@{PUBLIC_IP} -p {pod.ssh_port}"}
    proxy = {"host": "ssh.runpod.io", "port": 22, "username": pod.pod_host_id,
             "command": f"ssh {pod.pod_host_id}@ssh.runpod.io"}
    # a CPU pod carries `cpu` (flavour, vCPUs, memory) and no `gpu`; a GPU pod the reverse (REST v2 Pod)
    compute: dict[str, Any] = (
        {"cpu": {"id": pod.cpu_id, "vcpuCount": pod.vcpu_count, "memory": max(1, round(pod.memory_gb))}}
        if pod.cpu_id else {"gpu": {"id": pod.gpu_id, "count": pod.gpu_count}})
    return {
        "id": pod.id,
        "name": pod.name,
        "status": pod.status,
        "actions": list(ACTIONS[pod.status]),
        "image": pod.image,
        "args": pod.args,
        "disk": pod.disk,
        "mounts": pod.mounts,
        "ports": list(pod.ports),
        "env": dict(pod.env),
        "registry": pod.registry,
        **compute,
        "cloud": pod.cloud,
        "dataCenterId": pod.data_center_id,
        "cudaVersion": None if pod.cpu_id else cloud.catalog.datacenters[pod.data_center_id].cuda,
        "ssh": {"proxy": proxy, "direct": direct},
        "template": None,
        "cost": pod.cost_per_hr if pod.status in ACTIVE else 0.0,
        "locked": pod.locked,
        "globalNetworking": {"enabled": pod.global_networking},
        "runtime": runtime,
        "createdAt": iso(pod.created_at),
        "startedAt": iso(pod.started_at),
    }


def volume_json(vol: VolumeRecord) -> dict[str, Any]:
    return {"id": vol.id, "name": vol.name, "size": vol.size, "dataCenter": vol.data_center_id, "type": vol.type}


def template_json(tpl: TemplateRecord) -> dict[str, Any]:
    return {
        "id": tpl.id,
        "name": tpl.name,
        "image": tpl.image,
        "args": tpl.args,
        "disk": tpl.disk,
        "mounts": tpl.mounts,
        "ports": list(tpl.ports),
        "env": dict(tpl.env),
        "registry": tpl.registry,
        "serverless": tpl.serverless,
        "public": tpl.public,
        "category": tpl.category,
        "startSsh": tpl.start_ssh,
        "startJupyter": tpl.start_jupyter,
        "allowedCudaVersions": list(tpl.allowed_cuda_versions),
    }


def template_from_body(body: dict[str, Any], base: TemplateRecord | None = None) -> TemplateRecord:
    tpl = base or TemplateRecord(id="", name=body["name"], image=body["image"])
    for key, attr in (("name", "name"), ("image", "image"), ("args", "args"), ("disk", "disk"), ("ports", "ports"),
                      ("env", "env"), ("registry", "registry"), ("serverless", "serverless"), ("public", "public"),
                      ("category", "category"), ("startSsh", "start_ssh"), ("startJupyter", "start_jupyter"),
                      ("allowedCudaVersions", "allowed_cuda_versions")):
        if key in body:
            setattr(tpl, attr, body[key])
    if body.get("mounts"):
        tpl.mounts = dict(body["mounts"])
    return tpl


def boolean_param(request: Request, name: str) -> bool | None:
    """A boolean query parameter (`true`/`false`, once); anything else is a 422, as the spec types it."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise ApiError(422, f"{name} must be true or false")
    return values[0] == "true"


def csv_param(request: Request, name: str) -> list[str]:
    raw = request.query_params.get(name)
    return [v.strip() for v in raw.split(",") if v.strip()] if raw else []


def check_list_params(request: Request, *names: str) -> None:
    """`name=` is the empty list (no filter); an empty entry in a non-empty list (`a,,b`, `,`) is malformed."""
    for name in names:
        raw = request.query_params.get(name)
        if raw and any(not v.strip() for v in raw.split(",")):
            raise ApiError(422, f"{name}: empty entry in {raw!r}")


def cpu_json(cloud: SandboxCloud, flavor: Any, request: Request) -> dict[str, Any]:
    """REST v2 CpuType; with include=AVAILABILITY, the level per data center for `vcpuCount` (default the
    flavour's minimum) free vCPUs (the POD product; serverless CPU workers are not served, so NONE there)."""
    out: dict[str, Any] = {
        "id": flavor.id, "name": flavor.name, "group": flavor.group,
        "vcpu": {"min": flavor.vcpu_min, "max": flavor.vcpu_max}, "ramGbPerVcpu": flavor.ram_gb_per_vcpu,
        "price": {"securePerVcpu": flavor.secure_per_vcpu, "serverlessPerVcpu": flavor.serverless_per_vcpu},
    }
    if "AVAILABILITY" in csv_param(request, "include"):
        pods = "POD" in csv_param(request, "product")
        want = int(request.query_params.get("vcpuCount") or max(2, flavor.vcpu_min))
        free = cloud.free_vcpus(flavor)
        # a level per data center as for GPUs, counting pods of `want` vCPUs that still fit
        levels = {dc: availability_level(n // want) if pods and n >= want else "NONE" for dc, n in free.items()}
        order = ["NONE", "LOW", "MEDIUM", "HIGH"]
        out["availability"] = max(levels.values(), key=order.index, default="NONE")
        if out["availability"] != "NONE":
            dcs = cloud.catalog.datacenters
            out["dataCenters"] = [{"id": dc, "name": dcs[dc].name, "availability": level}
                                  for dc, level in levels.items()]
    return out


def gpu_json(cloud: SandboxCloud, gpu_id: str, request: Request, free: dict[str, dict[str, int]]) -> dict[str, Any]:
    gpu = cloud.catalog.gpus[gpu_id]
    price: dict[str, float] = {"secure": gpu.secure, "community": gpu.community}
    if gpu.pool:
        price["serverless"] = round(gpu.secure * 1.9, 2)
    out: dict[str, Any] = {
        "id": gpu.id,
        "name": gpu.name,
        "pool": gpu.pool,
        "manufacturer": gpu.manufacturer,
        "memory": gpu.memory,
        "secure": bool(gpu.stock),
        "community": bool(gpu.community_stock),
        "price": price,
        "maxCount": {"secure": gpu.max_count, "community": gpu.max_count},
    }
    if "AVAILABILITY" in csv_param(request, "include"):
        count = int(request.query_params.get("count", "1"))
        dcs = cloud.catalog.datacenters
        countries = set(csv_param(request, "countryCodes"))
        exact = set(csv_param(request, "cudaVersions"))
        floor = request.query_params.get("minCudaVersion")

        def cuda_ok(version: str) -> bool:
            if exact:
                return version in exact
            if floor:  # a bare major means any release of it
                return cuda_key(version)[: len(cuda_key(floor))] >= cuda_key(floor)
            return True

        per_dc = {dc: n for dc, n in free[gpu.id].items() if not countries or dcs[dc].country in countries}
        levels = {dc: availability_level(n) if n >= count and cuda_ok(dcs[dc].cuda) else "NONE"
                  for dc, n in per_dc.items()}
        best = max((n for dc, n in per_dc.items() if levels[dc] != "NONE"), default=0)
        out["availability"] = availability_level(best)
        offered = [
            {"id": dc, "name": cloud.catalog.datacenters[dc].name, "availability": level}
            for dc, level in levels.items()
            if level != "NONE"
        ]
        if offered:
            out["dataCenters"] = offered
        versions: dict[str, bool] = {}
        for dc in per_dc:
            version = dcs[dc].cuda
            if exact and version not in exact:
                continue
            versions[version] = versions.get(version, False) or levels[dc] != "NONE"
        out["cudaVersions"] = [{"version": v, "available": a} for v, a in sorted(versions.items())]
    return out


def datacenter_json(cloud: SandboxCloud, dc_id: str, include: list[str],
                    free: dict[str, dict[str, int]]) -> dict[str, Any]:
    dc = cloud.catalog.datacenters[dc_id]
    out: dict[str, Any] = {
        "id": dc.id,
        "name": dc.name,
        "region": dc.region,
        "globalNetwork": dc.global_network,
        "networkVolumeTypes": list(dc.volume_types),
        "compliance": list(dc.compliance),
    }
    if "GPU_AVAILABILITY" in include:
        gpus = [
            {"id": gid, "name": cloud.catalog.gpus[gid].name, "availability": availability_level(per[dc_id])}
            for gid, per in free.items()
            if dc_id in per
        ]
        if gpus:
            out["gpuAvailability"] = gpus
    return out


# --- routes -----------------------------------------------------------------------------------------------------


class RestApi:
    def __init__(self, cloud: SandboxCloud) -> None:
        self.cloud = cloud

    def endpoint(self, handler: Handler, body_schema: str | None = None):
        cloud = self.cloud

        async def run(request: Request) -> Response:
            principal = cloud.principal_for(bearer_token(request))
            if principal is None:
                detail = "invalid api key" if bearer_token(request) else "missing bearer token"
                return problem(401, detail)
            key = principal.pod_id or "account"
            verdict = cloud.limiter.hit(key)
            headers = dict(verdict.headers)
            try:
                if not verdict.allowed:
                    raise ApiError(429, f"rate limit exceeded for the {verdict.window} window",
                                   headers={"Retry-After": str(verdict.retry_after)})
                path, method = request.url.path, request.method

                def matches(f):
                    return f.matches_request("rest", method, path)

                fault = cloud.faults.take("rate_limit", matches)
                if fault:
                    raise ApiError(429, "rate limit exceeded for the minute window",
                                   headers={"Retry-After": str(int(fault["retry_after"]))})
                fault = cloud.faults.take("server_error", matches)
                if fault:
                    raise ApiError(int(fault["status"]), SERVER_ERROR)
                body = None
                if body_schema is not None:
                    raw = await request.body()
                    try:
                        body = json.loads(raw or b"null")
                    except ValueError:
                        raise ApiError(400, "request body is not valid JSON") from None
                    errs = openapi.errors(body_schema, body)
                    if errs:
                        raise ApiError(422, "Request validation failed.", errors=errs)
                result = await handler(request, principal, body)
            except ApiError as exc:
                return problem(exc.status, exc.detail, errors=exc.errors, headers={**headers, **exc.headers})
            if isinstance(result, Response):
                result.headers.update(headers)
                return result
            status, payload = result
            if payload is None:
                return Response(status_code=status, headers=headers)
            return JSONResponse(payload, status_code=status, headers=headers)

        return run

    def routes(self) -> list[Route]:
        """One Route per path serving all its methods, so a 405 names every allowed method in `Allow`."""
        table: list[tuple[Any, ...]] = [
            ("GET", "/v2/pods", self.list_pods),
            ("POST", "/v2/pods", self.create_pod, "CreatePodRequest"),
            ("GET", "/v2/pods/{id}", self.get_pod),
            ("PATCH", "/v2/pods/{id}", self.update_pod, "UpdatePodRequest"),
            ("DELETE", "/v2/pods/{id}", self.delete_pod),
            ("POST", "/v2/pods/{id}/action", self.pod_action, "PodActionRequest"),
            ("GET", "/v2/network-volumes", self.list_volumes),
            ("POST", "/v2/network-volumes", self.create_volume, "CreateNetworkVolumeRequest"),
            ("GET", "/v2/network-volumes/{id}", self.get_volume),
            ("PATCH", "/v2/network-volumes/{id}", self.update_volume, "UpdateNetworkVolumeRequest"),
            ("DELETE", "/v2/network-volumes/{id}", self.delete_volume),
            ("GET", "/v2/templates", self.list_templates),
            ("POST", "/v2/templates", self.create_template, "CreateTemplateRequest"),
            ("GET", "/v2/templates/{id}", self.get_template),
            ("PATCH", "/v2/templates/{id}", self.update_template, "UpdateTemplateRequest"),
            ("DELETE", "/v2/templates/{id}", self.delete_template),
            ("GET", "/v2/catalog/gpus", self.list_gpus),
            ("GET", "/v2/catalog/gpus/{id:path}", self.get_gpu),
            ("GET", "/v2/catalog/cpus", self.list_cpus),
            ("GET", "/v2/catalog/cpus/{id}", self.get_cpu),
            ("GET", "/v2/catalog/datacenters", self.list_datacenters),
            ("GET", "/v2/catalog/datacenters/{id}", self.get_datacenter),
            ("GET", "/v2/account/ssh-keys", self.get_ssh_keys),
            ("PUT", "/v2/account/ssh-keys", self.put_ssh_keys, "UpdateSshKeysRequest"),
            ("GET", "/v2/billing/pods", self.pod_billing),
        ]
        by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
        for method, path, handler, *schema in table:
            by_path.setdefault(path, {})[method] = self.endpoint(handler, *schema)

        def dispatch(methods: dict[str, Callable[[Request], Awaitable[Response]]]):
            async def run(request: Request) -> Response:
                return await methods["GET" if request.method == "HEAD" else request.method](request)

            return run

        return [Route(path, dispatch(methods), methods=list(methods)) for path, methods in by_path.items()]

    # pods

    async def list_pods(self, request, principal, body):
        boolean_param(request, "includeClusterPods")
        return 200, {"pods": [pod_json(self.cloud, p) for p in self.cloud.list_pods(principal)]}

    async def create_pod(self, request, principal, body):
        gpu, cpu = body.get("gpu"), body.get("cpu")
        if bool(gpu) == bool(cpu):
            raise ApiError(400, "set exactly one of gpu or cpu")
        gpu = gpu or {}
        spec = CreateRequest(
            name=body["name"],
            gpu_id=gpu.get("id", ""),
            cpu_id=cpu["id"] if cpu else None,
            vcpu_count=int(cpu["vcpuCount"]) if cpu else 0,
            image=body.get("image"),
            gpu_count=gpu.get("count", 1),
            cloud=body.get("cloud", "SECURE"),
            data_center_ids=list(body.get("dataCenterIds") or []),
            args=body.get("args"),
            disk=body.get("disk"),
            ports=body.get("ports"),
            env=body.get("env"),
            registry=body.get("registry"),
            mounts=body.get("mounts"),
            start_ssh=body.get("startSsh"),
            template_id=body.get("templateId"),
            allowed_cuda=list(gpu.get("allowedCudaVersions") or []),
            min_cuda=gpu.get("minCudaVersion"),
            global_networking=body.get("globalNetworking", False),
        )
        pod, answer_500 = self.cloud.create_pod(spec, principal, api="rest")
        if answer_500:
            raise ApiError(500, SERVER_ERROR)
        return 201, pod_json(self.cloud, pod)

    async def get_pod(self, request, principal, body):
        return 200, pod_json(self.cloud, self.cloud.get_pod(request.path_params["id"], principal))

    async def update_pod(self, request, principal, body):
        pod = await self.cloud.update_pod(request.path_params["id"], body, principal)
        return 200, pod_json(self.cloud, pod)

    async def delete_pod(self, request, principal, body):
        await self.cloud.act(request.path_params["id"], "terminate", principal)
        return 204, None

    async def pod_action(self, request, principal, body):
        pod = await self.cloud.act(request.path_params["id"], body["action"], principal)
        if body["action"] == "terminate":
            return 204, None
        return 200, pod_json(self.cloud, pod)

    # network volumes

    async def list_volumes(self, request, principal, body):
        return 200, {"networkVolumes": [volume_json(v) for v in self.cloud.list_volumes(principal)]}

    async def create_volume(self, request, principal, body):
        vol = self.cloud.create_volume(body["name"], body["size"], body["dataCenter"], body.get("type"), principal)
        return 201, volume_json(vol)

    async def get_volume(self, request, principal, body):
        return 200, volume_json(self.cloud.get_volume(request.path_params["id"], principal))

    async def update_volume(self, request, principal, body):
        vol = self.cloud.update_volume(request.path_params["id"], principal, name=body.get("name"),
                                       size=body.get("size"))
        return 200, volume_json(vol)

    async def delete_volume(self, request, principal, body):
        self.cloud.delete_volume(request.path_params["id"], principal)
        return 204, None

    # templates

    async def list_templates(self, request, principal, body):
        return 200, {"templates": [template_json(t) for t in self.cloud.list_templates(principal)]}

    async def create_template(self, request, principal, body):
        tpl = self.cloud.create_template(template_from_body(body), principal)
        if self.cloud.created_500("template", "rest"):
            raise ApiError(500, SERVER_ERROR)
        return 201, template_json(tpl)

    async def get_template(self, request, principal, body):
        return 200, template_json(self.cloud.get_template(request.path_params["id"], principal))

    async def update_template(self, request, principal, body):
        tpl = self.cloud.get_template(request.path_params["id"], principal)
        tpl = self.cloud.save_template(template_from_body(body, tpl), principal)
        return 200, template_json(tpl)

    async def delete_template(self, request, principal, body):
        self.cloud.delete_template(request.path_params["id"], principal)
        return 204, None

    # catalog

    def _check_catalog_params(self, request: Request) -> None:
        check_list_params(request, "include", "product", "countryCodes", "cudaVersions")
        include = csv_param(request, "include")
        product = csv_param(request, "product")
        bad = [i for i in include if i != "AVAILABILITY"]
        if bad:
            raise ApiError(422, f"include: unsupported value {bad[0]!r}; supported: AVAILABILITY")
        if include and not product:
            raise ApiError(400, "include=AVAILABILITY requires product (POD, CLUSTER or SERVERLESS)")
        if product and not include:
            raise ApiError(400, "product is only valid with include=AVAILABILITY")
        bad = [p for p in product if p not in ("POD", "CLUSTER", "SERVERLESS")]
        if bad:
            raise ApiError(422, f"product: unsupported value {bad[0]!r}")
        q = request.query_params
        count = q.get("count", "1")
        if not count.isdigit() or int(count) < 1:
            raise ApiError(422, "count must be an integer ≥ 1")
        for name in ("count", "cloud", "countryCodes", "cudaVersions", "minCudaVersion"):
            if name in q and not include:
                raise ApiError(400, f"{name} is only valid with include=AVAILABILITY")
        if q.get("cloud", "SECURE") not in ("SECURE", "COMMUNITY"):
            raise ApiError(422, f"cloud: unsupported value {q['cloud']!r}; supported: SECURE, COMMUNITY")
        if "cudaVersions" in q and "minCudaVersion" in q:
            raise ApiError(400, "cudaVersions and minCudaVersion are mutually exclusive")
        for name, pattern in (("countryCodes", r"[A-Z]{2}"), ("cudaVersions", r"[0-9]+\.[0-9]+")):
            bad = [v for v in csv_param(request, name) if not re.fullmatch(pattern, v)]
            if bad:
                raise ApiError(422, f"{name}: malformed entry {bad[0]!r}")
        if "minCudaVersion" in q and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", q["minCudaVersion"]):
            raise ApiError(422, f"minCudaVersion: malformed value {q['minCudaVersion']!r}")

    async def list_gpus(self, request, principal, body):
        self._check_catalog_params(request)
        free = self.cloud.free_gpus(request.query_params.get("cloud", "SECURE"))
        gpus = [gpu_json(self.cloud, gid, request, free) for gid in self.cloud.catalog.gpus]
        if "countryCodes" in request.query_params:  # a type with no data center in those countries drops out
            countries = set(csv_param(request, "countryCodes"))
            gpus = [g for g in gpus if any(self.cloud.catalog.datacenters[dc].country in countries
                                           for dc in free[g["id"]])]
        return 200, {"gpus": gpus}

    async def get_gpu(self, request, principal, body):
        self._check_catalog_params(request)
        gpu_id = request.path_params["id"]
        if gpu_id not in self.cloud.catalog.gpus:
            raise ApiError(404, f"GPU type {gpu_id!r} not found")
        return 200, gpu_json(self.cloud, gpu_id, request,
                             self.cloud.free_gpus(request.query_params.get("cloud", "SECURE")))

    def _check_cpu_params(self, request: Request) -> None:
        check_list_params(request, "include", "product")
        include, product = csv_param(request, "include"), csv_param(request, "product")
        bad = [i for i in include if i != "AVAILABILITY"]
        if bad:
            raise ApiError(422, f"include: unsupported value {bad[0]!r}; supported: AVAILABILITY")
        if include and not product:
            raise ApiError(400, "include=AVAILABILITY requires product (POD or SERVERLESS)")
        if product and not include:
            raise ApiError(400, "product is only valid with include=AVAILABILITY")
        bad = [p for p in product if p not in ("POD", "SERVERLESS")]
        if bad:
            raise ApiError(422, f"product: unsupported value {bad[0]!r}; supported for CPUs: POD, SERVERLESS")
        count = request.query_params.get("vcpuCount")
        if count is not None:
            if not include:
                raise ApiError(400, "vcpuCount is only valid with include=AVAILABILITY")
            if not count.isdigit() or int(count) < 2 or int(count) & (int(count) - 1):
                raise ApiError(422, "vcpuCount must be a power of two ≥ 2")

    async def list_cpus(self, request, principal, body):
        self._check_cpu_params(request)
        return 200, {"cpus": [cpu_json(self.cloud, f, request) for f in self.cloud.catalog.cpus.values()]}

    async def get_cpu(self, request, principal, body):
        self._check_cpu_params(request)
        flavor = self.cloud.catalog.cpus.get(request.path_params["id"])
        if flavor is None:
            raise ApiError(404, f"CPU type {request.path_params['id']!r} not found")
        return 200, cpu_json(self.cloud, flavor, request)

    def _datacenters(self, request: Request) -> tuple[list[str], list[str]]:
        check_list_params(request, "include", "regions", "networkVolumeTypes", "compliance")
        include = csv_param(request, "include")
        bad = [i for i in include if i not in ("GPU_AVAILABILITY", "CPU_AVAILABILITY")]
        if bad:
            raise ApiError(422, f"include: unsupported value {bad[0]!r}")
        for name in ("regions", "networkVolumeTypes", "compliance"):
            if name in request.query_params:
                errs = openapi.param_errors("GET", "/v2/catalog/datacenters", name, csv_param(request, name))
                if errs:  # an empty list is schema-valid: no filter
                    raise ApiError(422, f"{name}: {errs[0]}")
        regions = set(csv_param(request, "regions"))
        volume_types = set(csv_param(request, "networkVolumeTypes"))
        compliance = set(csv_param(request, "compliance"))
        global_network = boolean_param(request, "globalNetwork")
        chosen = []
        for dc in self.cloud.catalog.datacenters.values():
            if regions and dc.region not in regions:
                continue
            if not volume_types <= set(dc.volume_types) or not compliance <= set(dc.compliance):
                continue
            if global_network is not None and dc.global_network != global_network:
                continue
            chosen.append(dc.id)
        return chosen, include

    async def list_datacenters(self, request, principal, body):
        chosen, include = self._datacenters(request)
        free = self.cloud.free_gpus()
        return 200, {"dataCenters": [datacenter_json(self.cloud, dc, include, free) for dc in chosen]}

    async def get_datacenter(self, request, principal, body):
        dc_id = request.path_params["id"]
        if dc_id not in self.cloud.catalog.datacenters:
            raise ApiError(404, f"data center {dc_id!r} not found")
        check_list_params(request, "include")
        include = csv_param(request, "include")
        bad = [i for i in include if i not in ("GPU_AVAILABILITY", "CPU_AVAILABILITY")]
        if bad:
            raise ApiError(422, f"include: unsupported value {bad[0]!r}")
        return 200, datacenter_json(self.cloud, dc_id, include, self.cloud.free_gpus())

    # account / billing

    async def get_ssh_keys(self, request, principal, body):
        self.cloud.require_account(principal)
        return 200, {"keys": self.cloud.ssh_keys()}

    async def put_ssh_keys(self, request, principal, body):
        return 200, {"keys": self.cloud.set_ssh_keys(body["keys"], principal)}

    async def pod_billing(self, request, principal, body):
        self.cloud.require_account(principal)
        q = request.query_params
        bucket = q.get("bucketSize", "day")
        if bucket not in BUCKETS:
            raise ApiError(422, f"bucketSize must be one of {', '.join(BUCKETS)}")
        last_n = q.get("lastN")
        if last_n is not None and ("startTime" in q or "endTime" in q):
            raise ApiError(400, "lastN is mutually exclusive with startTime/endTime")
        if last_n is not None and (not last_n.isdigit() or int(last_n) < 1):
            raise ApiError(422, "lastN must be an integer ≥ 1")

        def when(name: str) -> datetime | None:
            raw = q.get(name)
            if raw is None:
                return None
            try:
                value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                value = None
            if value is None or value.tzinfo is None or "T" not in raw.upper():  # RFC 3339 needs both
                raise ApiError(422, f"{name} must be an RFC 3339 date-time")
            return value

        try:
            report = pod_billing_report(
                self.cloud.store.intervals(), time.time(), bucket=bucket, start=when("startTime"),
                end=when("endTime"), last_n=int(last_n) if last_n else None, pod_id=q.get("podId"),
                cpu_pods=frozenset(p.id for p in self.cloud.store.pods(include_terminated=True) if p.cpu_id),
            )
        except WindowError as exc:
            raise ApiError(400, str(exc)) from None
        return 200, report


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as problem+json (never a non-JSON body)."""
    status = getattr(exc, "status_code", 500)
    headers = getattr(exc, "headers", None)
    if isinstance(exc, HTTPException) and status == 404:
        return problem(404, f"no route for {request.method} {request.url.path}")
    if status == 405:
        return problem(405, "The requested method is not allowed for this path.", headers=headers)
    return problem(status, str(getattr(exc, "detail", exc)), headers=headers)
