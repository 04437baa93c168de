"""GraphQL at /graphql: the dialect runpod SDK 1.12 sends (literal-only queries, body {"query": ...}).

Parsed and validated by graphql-core against schema.graphql. Schema/validation errors answer HTTP 400, business
errors (no capacity, not found, ...) HTTP 200 with `errors` and a null field, like RunPod. Every answer is JSON.
"""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .catalog import stock_status
from .cloud import ACTIVE, PUBLIC_IP, SERVER_ERROR, ApiError, CreateRequest, Principal, SandboxCloud
from .rest import bearer_token, http_port_public
from .store import PodRecord, TemplateRecord, VolumeRecord

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")


@cache
def schema():
    from graphql import build_schema

    built = build_schema(SCHEMA_PATH.read_text())
    for type_name, resolvers in (("Query", QUERY), ("Mutation", MUTATION)):
        fields = built.get_type(type_name).fields
        for name, fn in resolvers.items():
            fields[name].resolve = _business_errors(fn)
    return built


def js_numbers(value: Any) -> Any:
    """The JSON a JavaScript server writes: a number has no int/float kind there, so an integral Float is written
    `31`, not `31.0` (runpodctl decodes memoryInGb/vcpuCount/volumeInGb into Go ints and fails on `31.0`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [js_numbers(v) for v in value]
    return value


def _business_errors(fn):
    async def resolve(root, info, **args):
        from graphql import GraphQLError

        try:
            result = fn(info.context, **args)
            if hasattr(result, "__await__"):
                result = await result
            return result
        except ApiError as exc:
            raise GraphQLError(exc.graphql_message, extensions={"code": "RUNPOD"}) from exc

    return resolve


class Ctx:
    def __init__(self, cloud: SandboxCloud, principal: Principal) -> None:
        self.cloud = cloud
        self.principal = principal


# --- shapes -----------------------------------------------------------------------------------------------------


def pod_gql(cloud: SandboxCloud, pod: PodRecord) -> dict[str, Any]:
    runtime = None
    if pod.status == "RUNNING" and pod.ssh_port is not None:
        ports = []
        for spec in pod.ports:
            number, _, kind = spec.partition("/")
            if not number.isdigit():
                continue
            private = int(number)
            if private == 22 and kind == "tcp":
                ports.append({"ip": PUBLIC_IP, "isIpPublic": True, "privatePort": 22, "publicPort": pod.ssh_port,
                              "type": "tcp"})
            else:
                ports.append({"ip": "100.65.0.2", "isIpPublic": False, "privatePort": private,
                              "publicPort": http_port_public(pod, private), "type": kind or "tcp"})
        runtime = {
            "uptimeInSeconds": int(time.time() - (pod.started_at or time.time())),
            "ports": ports,
            "gpus": [{"id": f"GPU-{pod.machine_id}-{i}", "gpuUtilPercent": 0, "memoryUtilPercent": 0}
                     for i in range(pod.gpu_count)],
            "container": {"cpuPercent": 0, "memoryPercent": 0},
        }
    gpu = cloud.catalog.gpus.get(pod.gpu_id)  # None for a CPU pod
    dc = cloud.catalog.datacenters[pod.data_center_id]
    volume = cloud.store.get_volume(pod.volume_id) if pod.volume_id else None
    desired = "RUNNING" if pod.status in ACTIVE else "TERMINATED" if pod.status == "TERMINATED" else "EXITED"
    return {
        "id": pod.id,
        "name": pod.name,
        "machineId": pod.machine_id,
        "imageName": pod.image,
        "dockerArgs": pod.args,
        "dockerId": None,
        "gpuCount": pod.gpu_count,
        "vcpuCount": float(pod.vcpu_count if pod.cpu_id else max(pod.min_vcpu, 4 * pod.gpu_count)),
        "memoryInGb": float(pod.memory_gb if pod.cpu_id else max(pod.min_memory_gb, 31 * pod.gpu_count)),
        "containerDiskInGb": pod.disk,
        "volumeInGb": float(pod.volume_gb),
        "volumeMountPath": pod.mount_path,
        "desiredStatus": desired,
        "costPerHr": pod.cost_per_hr,
        "adjustedCostPerHr": pod.cost_per_hr,
        "env": [f"{k}={v}" for k, v in pod.env.items()],
        "ports": ",".join(pod.ports),
        "port": 22 if "22/tcp" in pod.ports else None,
        "templateId": pod.template_id,
        "networkVolumeId": pod.volume_id,
        "containerRegistryAuthId": pod.registry,
        "podType": "INTERRUPTABLE" if pod.interruptible else "RESERVED",
        "lastStatusChange": pod.last_status_change,
        "uptimeSeconds": 0,  # RunPod reports 0 here; the real value is runtime.uptimeInSeconds
        "locked": pod.locked,
        "lastStartedAt": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(pod.started_at)) if pod.started_at else None,
        "createdAt": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(pod.created_at)),
        "volumeEncrypted": False,
        "machine": {
            "podHostId": pod.pod_host_id,
            "gpuDisplayName": gpu.name if gpu else None,
            "gpuTypeId": gpu.id if gpu else None,
            "location": dc.country,
            "dataCenterId": dc.id,
            "secureCloud": pod.cloud == "SECURE",
            "supportPublicIp": True,
        },
        "runtime": runtime,
        "networkVolume": volume_gql(volume) if volume else None,
    }


def volume_gql(vol: VolumeRecord) -> dict[str, Any]:
    # storageType names RunPod's storage backend (CEPH_FS, VAST, ...), which the sandbox does not have: null
    return {"id": vol.id, "name": vol.name, "size": vol.size, "dataCenterId": vol.data_center_id,
            "storageClusterId": None, "storageType": None}


def template_gql(tpl: TemplateRecord) -> dict[str, Any]:
    persistent = tpl.mounts.get("persistent") or {}
    return {
        "id": tpl.id,
        "name": tpl.name,
        "imageName": tpl.image,
        "dockerArgs": tpl.args,
        "containerDiskInGb": tpl.disk,
        "volumeInGb": persistent.get("size", 0),
        "volumeMountPath": persistent.get("path", "/workspace"),
        "ports": ",".join(tpl.ports),
        "env": [{"key": k, "value": v} for k, v in tpl.env.items()],
        "isServerless": tpl.serverless,
        "isPublic": tpl.public,
        "startSsh": tpl.start_ssh,
        "startJupyter": tpl.start_jupyter,
        "readme": tpl.readme,
        "category": tpl.category,
        "containerRegistryAuthId": tpl.registry,
        "portsConfig": [],
        "startScript": None,
        "advancedStart": False,
        "isRunpod": False,
    }


def gpu_gql(cloud: SandboxCloud, gpu_id: str) -> dict[str, Any]:
    gpu = cloud.catalog.gpus[gpu_id]

    def lowest_price(info, input: dict[str, Any] | None = None) -> dict[str, Any]:
        args = input or {}
        count = int(args.get("gpuCount") or 1)
        secure = args.get("secureCloud")
        clouds = ["SECURE"] if secure else ["COMMUNITY"] if secure is False else ["SECURE", "COMMUNITY"]
        free: dict[str, int] = {}
        total = 0
        for c in clouds:
            for dc, n in cloud.free_gpus(c)[gpu.id].items():
                if not args.get("dataCenterId") or dc == args["dataCenterId"]:
                    free[dc] = max(free.get(dc, 0), n)
                    total += cloud.seed_stock(gpu, dc, c) or 0
        best = max(free.values(), default=0)
        price = gpu.secure if secure else gpu.community if secure is False else min(gpu.secure, gpu.community)
        return {
            "gpuName": gpu.name,
            "gpuTypeId": gpu.id,
            "minimumBidPrice": gpu.min_bid,
            "uninterruptablePrice": price,
            "clusterPrice": None,
            "minMemory": 31 * count,
            "minVcpu": 4 * count,
            "rentalPercentage": round(1 - sum(free.values()) / total, 3) if total else 0.0,
            "rentedCount": total - sum(free.values()),
            "totalCount": total,
            "stockStatus": stock_status(best) if best >= count else None,
            "minDownload": 1000,
            "minDisk": 100,
            "minUpload": 1000,
            "countryCode": None,
            "supportPublicIp": True,
            "compliance": [],
            "maxGpuCount": gpu.max_count,
            "maxUnreservedGpuCount": min(best, gpu.max_count),
            "availableGpuCounts": [n for n in range(1, gpu.max_count + 1) if n <= best],
            "gpuTypeDatacenters": [
                {"dataCenterId": dc, "supportNetworkVolumes": cloud.catalog.datacenters[dc].supports_volumes,
                 "availability": "AVAILABLE" if n >= count else "UNAVAILABLE"}
                for dc, n in free.items()
            ],
        }

    return {
        "id": gpu.id,
        "displayName": gpu.name,
        "manufacturer": gpu.manufacturer,
        "memoryInGb": gpu.memory,
        "cudaCores": gpu.cuda_cores,
        "secureCloud": bool(gpu.stock),
        "communityCloud": bool(gpu.community_stock),
        "securePrice": gpu.secure,
        "communityPrice": gpu.community,
        "communitySpotPrice": gpu.min_bid,
        "secureSpotPrice": gpu.min_bid,
        "oneWeekPrice": round(gpu.secure * 0.95, 2),
        "oneMonthPrice": round(gpu.secure * 0.9, 2),
        "threeMonthPrice": round(gpu.secure * 0.85, 2),
        "maxGpuCount": gpu.max_count,
        "maxGpuCountCommunityCloud": gpu.max_count,
        "maxGpuCountSecureCloud": gpu.max_count,
        "minPodGpuCount": 1,
        "lowestPrice": lowest_price,
    }


def user_gql(ctx: Ctx) -> dict[str, Any]:
    cloud = ctx.cloud
    pods = [p for p in cloud.store.pods()]
    return {
        "id": "user_sandbox",
        "pubKey": "\n".join(cloud.ssh_keys()),
        "email": "sandbox@localhost",
        "clientBalance": round(cloud.balance(), 4),
        "currentSpendPerHr": round(sum(p.cost_per_hr for p in pods if p.status in ACTIVE), 4),
        "spendLimit": 80,
        "notifyPodsStale": True,
        "notifyPodsGeneral": True,
        "notifyLowBalance": True,
        "creditAlertThreshold": 10,
        "notifyOther": True,
        "endpoints": [],
        "containerRegistryCreds": [],
        "secrets": [],
        "pods": lambda info: [pod_gql(cloud, p) for p in pods],
        "networkVolumes": lambda info: [volume_gql(v) for v in cloud.store.volumes()],
        "podTemplates": lambda info: [template_gql(t) for t in cloud.store.templates()],
    }


# --- resolvers ----------------------------------------------------------------------------------------------------


def env_dict(items: list[dict[str, str]] | None) -> dict[str, str] | None:
    return None if items is None else {item["key"]: item["value"] for item in items}


def spec_from_input(args: dict[str, Any], *, interruptible: bool = False) -> CreateRequest:
    if not args.get("gpuTypeId"):
        raise ApiError(400, "gpuTypeId is required")
    cloud_type = args.get("cloudType") or "ALL"
    mounts: dict[str, Any] = {}
    if args.get("networkVolumeId"):
        mounts["network"] = [{"volumeId": args["networkVolumeId"],
                              "path": args.get("volumeMountPath") or "/runpod-volume"}]
    elif args.get("volumeInGb"):
        mounts["persistent"] = {"size": int(args["volumeInGb"]), "path": args.get("volumeMountPath") or "/workspace"}
    mount_path = args.get("volumeMountPath") or None
    ports = args.get("ports")
    return CreateRequest(
        name=args.get("name") or "",
        gpu_id=args["gpuTypeId"],
        image=args.get("imageName") or None,
        gpu_count=args.get("gpuCount") or 1,
        cloud=None if cloud_type == "ALL" else cloud_type,
        data_center_ids=[args["dataCenterId"]] if args.get("dataCenterId") else [],
        args=args.get("dockerArgs"),
        disk=args.get("containerDiskInGb"),
        ports=[p for p in ports.split(",") if p] if ports is not None else None,
        env=env_dict(args.get("env")),
        registry=args.get("containerRegistryAuthId") or None,
        mounts=mounts or None,
        start_ssh=args.get("startSsh"),
        template_id=args.get("templateId"),
        allowed_cuda=list(args.get("allowedCudaVersions") or []),
        min_cuda=args.get("minCudaVersion"),
        interruptible=interruptible,
        bid_per_gpu=args.get("bidPerGpu"),
        min_vcpu=args.get("minVcpuCount") or 1,
        min_memory_gb=args.get("minMemoryInGb") or 1,
        volume_mount_path=mount_path,
    )


def _deploy(ctx: Ctx, spec: CreateRequest) -> dict[str, Any]:
    from graphql import GraphQLError

    pod, answer_500 = ctx.cloud.create_pod(spec, ctx.principal, api="graphql")
    if answer_500:
        raise GraphQLError(SERVER_ERROR, extensions={"code": "INTERNAL_SERVER_ERROR"})
    return pod_gql(ctx.cloud, pod)


def q_gpu_types(ctx: Ctx, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    ids = list(ctx.cloud.catalog.gpus)
    if input and input.get("id") is not None:
        ids = [i for i in ids if i == input["id"]]
    if input and input.get("ids") is not None:
        ids = [i for i in ids if i in input["ids"]]
    return [gpu_gql(ctx.cloud, i) for i in ids]


def q_myself(ctx: Ctx) -> dict[str, Any]:
    ctx.cloud.require_account(ctx.principal)
    return user_gql(ctx)


def q_pod(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any] | None:
    try:
        pod = ctx.cloud.get_pod(input["podId"], ctx.principal)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return pod_gql(ctx.cloud, pod)


def q_pod_templates(ctx: Ctx, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Public templates (runpodctl lists community ones with {isRunpod: false}); the sandbox has no RunPod-official
    templates, so {isRunpod: true} is empty. Account templates are myself.podTemplates."""
    args = input or {}
    if args.get("isRunpod"):
        return []
    out = [t for t in ctx.cloud.store.templates() if t.public]
    if args.get("isServerless") is not None:
        out = [t for t in out if t.serverless == args["isServerless"]]
    if args.get("category"):
        out = [t for t in out if t.category == args["category"]]
    return [template_gql(t) for t in out]


def q_pod_template(ctx: Ctx, id: str) -> dict[str, Any] | None:
    tpl = ctx.cloud.store.get_template(id)
    return template_gql(tpl) if tpl is not None else None


def q_cpu_flavors(ctx: Ctx, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The catalog's CPU flavours (the same ones REST v2 `GET /v2/catalog/cpus` lists); `id` filters to one."""
    wanted = (input or {}).get("id")
    return [{"id": f.id, "groupId": f.id, "groupName": f.group, "displayName": f.name, "minVcpu": float(f.vcpu_min),
             "maxVcpu": f.vcpu_max, "vcpuBurstable": False, "ramMultiplier": f.ram_gb_per_vcpu,
             "diskLimitPerVcpu": f.disk_limit_per_vcpu}
            for f in ctx.cloud.catalog.cpus.values() if wanted in (None, f.id)]


def q_datacenters(ctx: Ctx) -> list[dict[str, Any]]:
    cloud = ctx.cloud
    out = []
    for dc in cloud.catalog.datacenters.values():
        out.append({
            "id": dc.id,
            "name": dc.name,
            "location": dc.country,
            "listed": True,
            "storageSupport": dc.supports_volumes,
            "globalNetwork": dc.global_network,
            "region": dc.region,
            "compliance": list(dc.compliance),
            "gpuAvailability": _gpu_availability(cloud, dc.id),
        })
    return out


def _gpu_availability(cloud: SandboxCloud, dc_id: str):
    def resolve(info, input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        args = input or {}
        count = args.get("gpuCount") or 1
        secure = args.get("secureCloud")
        clouds = ["SECURE"] if secure else ["COMMUNITY"] if secure is False else ["SECURE", "COMMUNITY"]
        per_gpu: dict[str, int] = {}
        for c in clouds:
            for gid, per in cloud.free_gpus(c).items():
                if dc_id in per:
                    per_gpu[gid] = max(per_gpu.get(gid, 0), per[dc_id])
        return [{"id": gid, "available": n >= count, "stockStatus": stock_status(n), "gpuTypeId": gid,
                 "gpuTypeDisplayName": cloud.catalog.gpus[gid].name, "displayName": cloud.catalog.gpus[gid].name}
                for gid, n in per_gpu.items()]

    return resolve


def m_deploy(ctx: Ctx, input: dict[str, Any] | None = None) -> dict[str, Any]:
    return _deploy(ctx, spec_from_input(input or {}))


def m_rent_interruptable(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    return _deploy(ctx, spec_from_input(input, interruptible=True))


def m_deploy_cpu(ctx: Ctx, input: dict[str, Any]) -> None:
    raise ApiError(400, "CPU pods are not offered by this sandbox; deploy a GPU pod")


async def m_stop(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    return pod_gql(ctx.cloud, await ctx.cloud.act(input["podId"], "stop", ctx.principal))


async def m_resume(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    return pod_gql(ctx.cloud, await ctx.cloud.act(input["podId"], "start", ctx.principal))


async def m_bid_resume(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    pod = ctx.cloud.get_pod(input["podId"], ctx.principal)
    gpu = ctx.cloud.catalog.gpus[pod.gpu_id]
    if input["bidPerGpu"] < gpu.min_bid:
        raise ApiError(400, f"bid ${input['bidPerGpu']:.2f}/GPU/hr is below the minimum bid ${gpu.min_bid:.2f}")
    if pod.interruptible:
        pod.bid_per_gpu = input["bidPerGpu"]
        pod.cost_per_hr = round(input["bidPerGpu"] * pod.gpu_count, 4)
        ctx.cloud.store.save_pod(pod)
    return pod_gql(ctx.cloud, await ctx.cloud.act(pod.id, "start", ctx.principal))


async def m_terminate(ctx: Ctx, input: dict[str, Any]) -> None:
    await ctx.cloud.act(input["podId"], "terminate", ctx.principal)


async def m_edit(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if input.get("imageName") is not None:
        changes["image"] = input["imageName"]
    if input.get("dockerArgs") is not None:
        changes["args"] = input["dockerArgs"]
    if input.get("env") is not None:
        changes["env"] = env_dict(input["env"])
    if input.get("ports") is not None:
        changes["ports"] = [p for p in input["ports"].split(",") if p]
    if input.get("containerDiskInGb") is not None:
        changes["disk"] = input["containerDiskInGb"]
    pod = await ctx.cloud.update_pod(input["podId"], changes, ctx.principal)
    return pod_gql(ctx.cloud, pod)


def m_create_volume(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    vol = ctx.cloud.create_volume(input.get("name") or "", input.get("size") or 10, input["dataCenterId"], None,
                                  ctx.principal)
    return volume_gql(vol)


def m_update_volume(ctx: Ctx, input: dict[str, Any]) -> dict[str, Any]:
    vol = ctx.cloud.update_volume(input["id"], ctx.principal, name=input.get("name"), size=input.get("size"))
    return volume_gql(vol)


def m_delete_volume(ctx: Ctx, input: dict[str, Any]) -> None:
    ctx.cloud.delete_volume(input["id"], ctx.principal)


def m_save_template(ctx: Ctx, input: dict[str, Any] | None = None) -> dict[str, Any]:
    args = input or {}
    existing = ctx.cloud.get_template(args["id"], ctx.principal) if args.get("id") else None
    image = args.get("imageName") or (existing.image if existing else None)
    if not image:
        raise ApiError(400, "imageName is required to create a template")
    tpl = existing or TemplateRecord(id="", name=args["name"], image=image)
    tpl.name = args["name"]
    tpl.image = image
    tpl.args = args.get("dockerArgs") or ""
    tpl.disk = args.get("containerDiskInGb") or 50
    size = args.get("volumeInGb") or 0
    tpl.mounts = {"persistent": {"size": size, "path": args.get("volumeMountPath") or "/workspace"}} if size else {}
    tpl.ports = [p for p in (args.get("ports") or "").split(",") if p]
    tpl.env = env_dict(args.get("env")) or {}
    tpl.serverless = bool(args.get("isServerless"))
    tpl.public = bool(args.get("isPublic"))
    tpl.start_ssh = args.get("startSsh", True) is not False
    tpl.start_jupyter = bool(args.get("startJupyter"))
    tpl.readme = args.get("readme") or ""
    tpl.registry = args.get("containerRegistryAuthId") or None
    if args.get("category"):
        tpl.category = args["category"]
    if existing:
        return template_gql(ctx.cloud.save_template(tpl, ctx.principal))
    made = template_gql(ctx.cloud.create_template(tpl, ctx.principal))
    if ctx.cloud.created_500("template", "graphql"):
        from graphql import GraphQLError

        raise GraphQLError(SERVER_ERROR, extensions={"code": "INTERNAL_SERVER_ERROR"})
    return made


def m_delete_template(ctx: Ctx, templateName: str | None = None) -> None:
    ctx.cloud.require_account(ctx.principal)
    tpl = ctx.cloud.store.template_by_name(templateName or "")
    if tpl is None:
        raise ApiError(404, f"template {templateName!r} not found")
    ctx.cloud.delete_template(tpl.id, ctx.principal)


def m_update_user_settings(ctx: Ctx, input: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx.cloud.require_account(ctx.principal)
    if input and input.get("pubKey") is not None:
        keys = [line.strip() for line in input["pubKey"].splitlines() if line.strip()]
        ctx.cloud.set_ssh_keys(keys, ctx.principal)
    return user_gql(ctx)


QUERY = {"gpuTypes": q_gpu_types, "myself": q_myself, "pod": q_pod, "dataCenters": q_datacenters,
         "podTemplates": q_pod_templates, "podTemplate": q_pod_template, "cpuFlavors": q_cpu_flavors}
MUTATION = {
    "podFindAndDeployOnDemand": m_deploy,
    "podRentInterruptable": m_rent_interruptable,
    "deployCpuPod": m_deploy_cpu,
    "podStop": m_stop,
    "podResume": m_resume,
    "podBidResume": m_bid_resume,
    "podTerminate": m_terminate,
    "podEditJob": m_edit,
    "createNetworkVolume": m_create_volume,
    "updateNetworkVolume": m_update_volume,
    "deleteNetworkVolume": m_delete_volume,
    "saveTemplate": m_save_template,
    "deleteTemplate": m_delete_template,
    "updateUserSettings": m_update_user_settings,
}


# --- the endpoint -------------------------------------------------------------------------------------------------


def gql_errors(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status,
                        headers=headers)


def root_fields(document) -> list[str]:
    from graphql import OperationDefinitionNode

    names = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            names += [sel.name.value for sel in definition.selection_set.selections if hasattr(sel, "name")]
    return names


def make_endpoint(cloud: SandboxCloud):
    async def graphql_endpoint(request: Request) -> JSONResponse:
        from graphql import GraphQLError, execute, parse, validate

        key = bearer_token(request) or request.query_params.get("api_key")
        principal = cloud.principal_for(key)
        if principal is None:
            return gql_errors(401, "Unauthorized request, please check your API key.", "UNAUTHENTICATED")
        verdict = cloud.limiter.hit(principal.pod_id or "account")
        headers = dict(verdict.headers)
        if not verdict.allowed:
            headers["Retry-After"] = str(verdict.retry_after)
            return JSONResponse({"message": f"rate limit exceeded for the {verdict.window} window"}, 429, headers)
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return gql_errors(400, "Request body is not valid JSON.", "BAD_REQUEST", headers)
        query = payload.get("query") if isinstance(payload, dict) else None
        if not isinstance(query, str):
            return gql_errors(400, "Must provide query string.", "BAD_REQUEST", headers)
        try:
            document = parse(query)
        except GraphQLError as exc:
            return JSONResponse({"errors": [exc.formatted]}, 400, headers)
        operations = root_fields(document)

        def matches(f):
            return any(f.matches_request("graphql", operation=op) for op in operations or [""])

        fault = cloud.faults.take("rate_limit", matches)
        if fault:
            headers["Retry-After"] = str(int(fault["retry_after"]))
            return JSONResponse({"message": "rate limit exceeded for the minute window"}, 429, headers)
        fault = cloud.faults.take("server_error", matches)
        if fault:
            return gql_errors(int(fault["status"]), SERVER_ERROR, "INTERNAL_SERVER_ERROR", headers)
        problems = validate(schema(), document)
        if problems:
            return JSONResponse({"errors": [e.formatted for e in problems]}, 400, headers)
        variables = payload.get("variables") if isinstance(payload.get("variables"), dict) else None
        result = execute(schema(), document, context_value=Ctx(cloud, principal), variable_values=variables,
                         operation_name=payload.get("operationName"))
        if hasattr(result, "__await__"):
            result = await result
        body: dict[str, Any] = {"data": js_numbers(result.data)}
        if result.errors:
            body = {"errors": [e.formatted for e in result.errors], "data": js_numbers(result.data)}
        return JSONResponse(body, 200, headers)

    return graphql_endpoint


def warm() -> None:
    schema()
