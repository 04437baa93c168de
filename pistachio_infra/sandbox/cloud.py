"""The sandbox cloud: pods, volumes, templates, keys, stock, billing and faults, independent of the wire protocol.

REST v2 (rest.py), GraphQL (graphql_api.py) and the admin routes (admin.py) translate requests into calls here.
Pod lifecycle: PROVISIONING -> STARTING (PodHost.start: sshd) -> RUNNING (PodHost.ssh_ready) -> EXITED (stop,
preemption) / TERMINATED. A background task (`run`) advances pods; every host call runs in a worker thread while
the pod's lock is held, so a terminate waits for a start in flight and then kills what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import shutil
import socket
import string
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .billing import billed_by_pod
from .catalog import CpuFlavor, GpuOffer, cuda_key, load_catalog
from .faults import Fault, FaultBook
from .ratelimit import RateLimiter
from .scenario import Scenario, write_standin_knobs
from .store import ACTIVE, PodRecord, SandboxStore, TemplateRecord, VolumeRecord

log = logging.getLogger("pistachio.sandbox")

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
NO_GPU_ON_HOST = "There are not enough free GPUs on the host machine to start this pod."
SERVER_ERROR = "Something went wrong. Please try again later or contact support."
PUBLIC_IP = "127.0.0.1"
#: How long a booting pod's sshd may take to answer: generous, since a loaded machine (CI, parallel tests) is slow
#: and a pod that fails here ends as ERROR, which clients treat as a dead pod and replace.
SSHD_START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3

_ALNUM = string.ascii_lowercase + string.digits


def new_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_api_key() -> str:
    return "rpa_" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(40))


def http_ports(ports: list[str]) -> list[int]:
    """The private port numbers of the `N/http` entries of a pod's ports."""
    out = []
    for spec in ports:
        number, _, kind = spec.partition("/")
        if kind == "http" and number.isdigit():
            out.append(int(number))
    return out


def _ephemeral_range() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A port free now for a pod's sshd or HTTP service, picked outside the kernel's ephemeral range: the port is
    closed again before the pod binds it, and in that range any outgoing connection on the machine (other tests,
    other sandboxes) could take it meanwhile."""
    ephemeral = _ephemeral_range()
    for _ in range(200):
        candidate = random.randrange(10000, 65000)
        if candidate in ephemeral:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiError(Exception):
    """A refusal with its HTTP status; `graphql_message` is what the GraphQL API says (defaults to `detail`)."""

    TITLES: ClassVar[dict[int, str]] = {
        400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
        409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
        502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
    }

    def __init__(self, status: int, detail: str, *, errors: list[str] | None = None,
                 headers: dict[str, str] | None = None, graphql_message: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.graphql_message = graphql_message or detail

    @property
    def title(self) -> str:
        return self.TITLES.get(self.status, "Error")


@dataclass(frozen=True)
class Principal:
    kind: str  # "account" | "pod"
    pod_id: str | None = None

    @property
    def is_account(self) -> bool:
        return self.kind == "account"


ACCOUNT = Principal("account")


class PodHostLike(Protocol):
    def start(self, pod_id: str, *, ssh_port: int, public_key: str, env: dict[str, str], workspace: Path,
              start_cmd: str | None = None, timeout: float = 10.0) -> None: ...
    def ssh_ready(self, pod_id: str) -> bool: ...
    def stop(self, pod_id: str) -> None: ...
    def drop_connections(self, pod_id: str) -> None: ...
    def processes(self, pod_id: str) -> list[int]: ...


@dataclass
class CreateRequest:
    """A create request, whichever API it came through."""

    name: str
    gpu_id: str
    image: str | None = None
    gpu_count: int = 1
    cloud: str | None = "SECURE"  # None: any cloud (GraphQL cloudType ALL)
    data_center_ids: list[str] = field(default_factory=list)
    args: str | None = None
    disk: int | None = None
    ports: list[str] | None = None
    env: dict[str, str] | None = None
    registry: str | None = None
    mounts: dict[str, Any] | None = None
    start_ssh: bool | None = None
    template_id: str | None = None
    allowed_cuda: list[str] = field(default_factory=list)
    min_cuda: str | None = None
    interruptible: bool = False
    bid_per_gpu: float | None = None
    min_vcpu: int = 1
    min_memory_gb: int = 1
    global_networking: bool = False
    volume_mount_path: str | None = None
    cpu_id: str | None = None  # a CPU pod (REST v2 `cpu: {id, vcpuCount}`): gpu_id is "" then
    vcpu_count: int = 0


ACTIONS = {
    "PROVISIONING": ["stop", "terminate"],
    "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"],
    "EXITED": ["start", "terminate"],
    "ERROR": ["start", "terminate"],
    "TERMINATED": [],
}


class SandboxCloud:
    def __init__(self, home: Path, scenario: Scenario) -> None:
        self.home = home
        self.store = SandboxStore(home / "state.sqlite3")
        self.catalog = load_catalog()
        self.faults = FaultBook()
        self.standin_path = home / "standin-scenario.json"
        self.api_key: str = self.store.get_meta("api_key") or new_api_key()
        self.store.set_meta("api_key", self.api_key)
        self.scenario = scenario
        self.limiter = RateLimiter(scenario.rate_limit)
        self.apply_scenario(scenario)
        self.host: PodHostLike | None = None
        self.host_error: str | None = None
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    # --- scenario ------------------------------------------------------------------------------------------

    def apply_scenario(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.limiter = RateLimiter(scenario.rate_limit)
        self.faults.clear()
        for fault in scenario.faults:
            params = dict(fault)
            self.faults.add(params.pop("kind"), **params)
        write_standin_knobs(scenario, self.standin_path)

    # --- keys ----------------------------------------------------------------------------------------------

    def principal_for(self, key: str | None) -> Principal | None:
        if not key:
            return None
        if secrets.compare_digest(key, self.api_key):
            return ACCOUNT
        pod = self.store.pod_by_key(key)
        if pod is not None and pod.status != "TERMINATED":
            return Principal("pod", pod.id)
        return None

    @staticmethod
    def require_account(principal: Principal) -> None:
        if not principal.is_account:
            raise ApiError(403, "access denied: a pod-scoped key can only read, stop or terminate its own pod")

    # --- stock / catalog -----------------------------------------------------------------------------------

    def _usage(self, cloud: str = "SECURE") -> dict[tuple[str, str], int]:
        """(GPU id, data center) -> GPUs that active pods of that cloud hold."""
        used: dict[tuple[str, str], int] = defaultdict(int)
        for pod in self.store.pods():
            if pod.status in ACTIVE and pod.cloud == cloud:
                used[(pod.gpu_id, pod.data_center_id)] += pod.gpu_count
        return used

    def seed_stock(self, gpu: GpuOffer, dc_id: str, cloud: str = "SECURE") -> int | None:
        """GPUs of this type the data center has in total in that cloud; None when it does not offer the type there.
        Secure and community machines are different machines: each cloud has its own stock (catalog.toml)."""
        if cloud == "COMMUNITY":
            return gpu.community_stock.get(dc_id)
        override = self.scenario.stock.get(gpu.id, {})
        if dc_id in override:
            return override[dc_id]
        return gpu.stock.get(dc_id)

    def _blocking_fault(self, gpu_id: str, dc_id: str, *, visible_only: bool = False) -> Fault | None:
        for fault in self.faults.active("no_capacity"):
            if visible_only and not fault["visible"]:
                continue
            if fault["gpu"] in (None, gpu_id) and fault["data_center"] in (None, dc_id):
                return fault
        return None

    def free_gpus(self, cloud: str = "SECURE") -> dict[str, dict[str, int]]:
        """GPU id -> data center -> free GPUs in that cloud as the catalog shows them (visible no-capacity faults
        included)."""
        usage = self._usage(cloud)
        free: dict[str, dict[str, int]] = {}
        for gpu in self.catalog.gpus.values():
            per_dc = {}
            for dc_id in self.catalog.datacenters:
                seed = self.seed_stock(gpu, dc_id, cloud)
                if seed is None:
                    continue
                n = max(0, seed - usage.get((gpu.id, dc_id), 0))
                if self._blocking_fault(gpu.id, dc_id, visible_only=True):
                    n = 0
                per_dc[dc_id] = n
            free[gpu.id] = per_dc
        return free

    # --- pods: create ----------------------------------------------------------------------------------------

    def _merge_template(self, spec: CreateRequest) -> CreateRequest:
        if not spec.template_id:
            return spec
        tpl = self.store.get_template(spec.template_id)
        if tpl is None:
            raise ApiError(404, f"template {spec.template_id} not found")
        if tpl.serverless:
            raise ApiError(422, f"template {spec.template_id} is a serverless template")
        mounts = spec.mounts
        if mounts is None and tpl.mounts.get("persistent"):
            mounts = {"persistent": dict(tpl.mounts["persistent"])}
        return replace(
            spec,
            image=spec.image or tpl.image,
            args=tpl.args if spec.args is None else spec.args,
            disk=tpl.disk if spec.disk is None else spec.disk,
            ports=list(tpl.ports) if spec.ports is None else spec.ports,
            env={**tpl.env, **(spec.env or {})},
            registry=spec.registry if spec.registry is not None else tpl.registry,
            mounts=mounts,
            start_ssh=tpl.start_ssh if spec.start_ssh is None else spec.start_ssh,
            allowed_cuda=spec.allowed_cuda or list(tpl.allowed_cuda_versions),
        )

    def _check_balance(self, cost_per_hr: float) -> None:
        spent = sum(billed_by_pod(self.store.intervals(), time.time()).values())
        left = self.scenario.account.balance_usd - spent
        if left < cost_per_hr:
            raise ApiError(
                402,
                f"insufficient balance: deploying needs at least one hour of this pod's cost (${cost_per_hr:.2f}); "
                f"the balance is ${left:.2f}",
                graphql_message="You do not have enough funds to deploy this pod. Please add funds to your account.",
            )

    def _place(self, spec: CreateRequest, gpu: GpuOffer, volume: VolumeRecord | None) -> tuple[str, str]:
        """(data center, cloud) for the pod: the requested cloud, or for "any" (GraphQL ALL) secure first."""
        dcs = self.catalog.datacenters
        unknown = [d for d in spec.data_center_ids if d not in dcs]
        if unknown:
            raise ApiError(400, f"unknown data center {unknown[0]!r}; see GET /v2/catalog/datacenters")
        candidates = list(spec.data_center_ids)
        if volume is not None:
            if candidates and volume.data_center_id not in candidates:
                raise ApiError(
                    400,
                    f"network volume {volume.id} is in {volume.data_center_id}; a pod that mounts it must be placed "
                    f"in that data center (requested {', '.join(candidates)})",
                )
            candidates = [volume.data_center_id]
        clouds = [spec.cloud] if spec.cloud else ["SECURE", "COMMUNITY"]
        if volume is not None:
            clouds = [c for c in clouds if c == "SECURE"]
        blocked_by: Fault | None = None
        for cloud in clouds:
            found, blocked = self._place_in(spec, gpu, cloud, candidates)
            if found is not None:
                return found, cloud
            blocked_by = blocked_by or blocked
        if blocked_by is not None:
            self.faults.take("no_capacity", lambda f: f is blocked_by)
        raise ApiError(400, NO_CAPACITY)

    def _place_in(self, spec: CreateRequest, gpu: GpuOffer, cloud: str, candidates: list[str]
                  ) -> tuple[str | None, Fault | None]:
        dcs = self.catalog.datacenters
        usage = self._usage(cloud)
        if not candidates:
            def free_here(dc_id: str) -> int:
                return (self.seed_stock(gpu, dc_id, cloud) or 0) - usage.get((gpu.id, dc_id), 0)

            candidates = sorted(dcs, key=lambda d: (-free_here(d), d))
        blocked_by: Fault | None = None
        for dc_id in candidates:
            dc = dcs[dc_id]
            if spec.allowed_cuda and dc.cuda not in spec.allowed_cuda:
                continue
            if spec.min_cuda and cuda_key(dc.cuda) < cuda_key(spec.min_cuda):
                continue
            seed = self.seed_stock(gpu, dc_id, cloud)
            if seed is None or seed - usage.get((gpu.id, dc_id), 0) < spec.gpu_count:
                continue
            fault = self._blocking_fault(gpu.id, dc_id)
            if fault is not None:
                blocked_by = blocked_by or fault
                continue
            return dc_id, None
        return None, blocked_by

    def create_pod(self, spec: CreateRequest, principal: Principal, *, api: str) -> tuple[PodRecord, bool]:
        """Store a new pod (it boots in the background). Returns (pod, answer_500) where answer_500 says a
        create_500_after_create fault fired: the caller must answer 500 although the pod exists."""
        self.require_account(principal)
        if self.faults.take("forbidden"):
            raise ApiError(403, "access denied: this account cannot deploy to the requested GPU pool")
        if self.faults.take("insufficient_balance"):
            raise ApiError(402, "insufficient balance to deploy this pod",
                           graphql_message="You do not have enough funds to deploy this pod. Please add funds.")
        spec = self._merge_template(spec)
        if not spec.image:
            raise ApiError(400, "image is required unless templateId is set")
        if spec.cpu_id is not None:
            return self._create_cpu_pod(spec, api)
        gpu = self.catalog.gpus.get(spec.gpu_id)
        if gpu is None:
            raise ApiError(400, f"GPU type {spec.gpu_id!r} does not exist; see GET /v2/catalog/gpus",
                           graphql_message=f"Invalid GPU type: {spec.gpu_id}")
        if spec.gpu_count < 1 or spec.gpu_count > gpu.max_count:
            raise ApiError(400, f"gpu.count must be between 1 and {gpu.max_count} for {gpu.id}")
        mounts = dict(spec.mounts or {})
        if mounts.get("persistent") and mounts.get("network"):
            raise ApiError(400, "mounts: set at most one of persistent or network")
        volume = None
        if mounts.get("network"):
            volume_id = mounts["network"][0]["volumeId"]
            volume = self.store.get_volume(volume_id)
            if volume is None:
                raise ApiError(400, f"network volume {volume_id} does not exist")
            if spec.cloud == "COMMUNITY":
                raise ApiError(400, "network volumes can only be mounted by SECURE cloud pods")
        if spec.allowed_cuda and spec.min_cuda:
            raise ApiError(400, "gpu.allowedCudaVersions and gpu.minCudaVersion are mutually exclusive")
        dc_id, cloud = self._place(spec, gpu, volume)
        if spec.interruptible:
            bid = spec.bid_per_gpu if spec.bid_per_gpu is not None else gpu.min_bid
            if bid < gpu.min_bid:
                raise ApiError(400, f"bid ${bid:.2f}/GPU/hr is below the minimum bid ${gpu.min_bid:.2f} for {gpu.id}")
            rate = round(bid * spec.gpu_count, 4)
        else:
            bid = None
            rate = round(gpu.price(cloud) * spec.gpu_count, 4)
        self._check_balance(rate)

        env = dict(spec.env or {})
        start_ssh = bool(spec.start_ssh)
        keys = self.ssh_keys()
        public_key = env.get("PUBLIC_KEY") or ("\n".join(keys) if start_ssh and keys else "")
        now = time.time()
        pod_id = new_id(14)
        pod = PodRecord(
            id=pod_id,
            name=spec.name,
            api_key=new_api_key(),
            machine_id=new_id(12),
            pod_host_id=f"{pod_id}-{secrets.token_hex(4)}",
            status="PROVISIONING",
            image=spec.image,
            gpu_id=gpu.id,
            gpu_count=spec.gpu_count,
            cloud=cloud,
            data_center_id=dc_id,
            cost_per_hr=rate,
            created_at=now,
            status_since=now,
            args=spec.args or "",
            disk=spec.disk or 50,
            ports=list(spec.ports or []),
            env=env,
            registry=spec.registry,
            mounts=mounts,
            start_ssh=start_ssh,
            public_key=public_key,
            template_id=spec.template_id,
            interruptible=spec.interruptible,
            bid_per_gpu=bid,
            min_vcpu=spec.min_vcpu,
            min_memory_gb=spec.min_memory_gb,
            global_networking=spec.global_networking,
            volume_mount_path=spec.volume_mount_path,
            provision_until=now + self.scenario.timing.provision_s,
            last_status_change=f"Rented by User: {time.strftime('%a %b %d %Y %H:%M:%S GMT+0000', time.gmtime(now))}",
        )
        self._bind_pod_faults(pod)
        self.store.save_pod(pod)
        self.store.open_interval(pod.id, now, rate)
        answer_500 = self.created_500("pod", api)
        log.info("pod %s (%s) created in %s on %s x%d", pod.id, pod.name, dc_id, gpu.id, spec.gpu_count)
        return pod, answer_500

    def _cpu_usage(self) -> dict[tuple[str, str], int]:
        """(flavour, data center) -> vCPUs that active CPU pods hold."""
        used: dict[tuple[str, str], int] = defaultdict(int)
        for pod in self.store.pods():
            if pod.status in ACTIVE and pod.cpu_id:
                used[(pod.cpu_id, pod.data_center_id)] += pod.vcpu_count
        return used

    def free_vcpus(self, flavor: CpuFlavor) -> dict[str, int]:
        """Data center -> vCPUs of this flavour free now."""
        used = self._cpu_usage()
        return {dc: seed - used.get((flavor.id, dc), 0) for dc, seed in flavor.stock.items()}

    def _create_cpu_pod(self, spec: CreateRequest, api: str) -> tuple[PodRecord, bool]:
        """A CPU pod: a flavour and a vCPU count (a power of two in the flavour's range), placed where that many
        vCPUs are free, billed per second at the flavour's price per vCPU-hour × vCPUs. REST v2 CreatePodRequest:
        memory comes from the flavour, `mounts.persistent` is invalid, network volumes are allowed."""
        flavor = self.catalog.cpus.get(spec.cpu_id or "")
        if flavor is None:
            raise ApiError(400, f"CPU flavor {spec.cpu_id!r} does not exist; see GET /v2/catalog/cpus",
                           graphql_message=f"Invalid CPU flavor: {spec.cpu_id}")
        n = spec.vcpu_count
        if n < max(2, flavor.vcpu_min) or n > flavor.vcpu_max or n & (n - 1):
            raise ApiError(400, f"cpu.vcpuCount must be a power of two from {max(2, flavor.vcpu_min)} to "
                                f"{flavor.vcpu_max} for {flavor.id}")
        mounts = dict(spec.mounts or {})
        if mounts.get("persistent"):
            raise ApiError(400, "mounts.persistent is invalid for CPU pods: use the container disk or a network volume")
        if spec.cloud not in (None, "SECURE"):
            raise ApiError(400, "CPU pods run in SECURE cloud only")
        dcs = self.catalog.datacenters
        unknown = [d for d in spec.data_center_ids if d not in dcs]
        if unknown:
            raise ApiError(400, f"unknown data center {unknown[0]!r}; see GET /v2/catalog/datacenters")
        candidates = list(spec.data_center_ids)
        if mounts.get("network"):
            volume_id = mounts["network"][0]["volumeId"]
            volume = self.store.get_volume(volume_id)
            if volume is None:
                raise ApiError(400, f"network volume {volume_id} does not exist")
            if candidates and volume.data_center_id not in candidates:
                raise ApiError(400, f"network volume {volume.id} is in {volume.data_center_id}; a pod that mounts "
                                    f"it must be placed in that data center (requested {', '.join(candidates)})")
            candidates = [volume.data_center_id]
        free = self.free_vcpus(flavor)
        if not candidates:
            candidates = sorted(free, key=lambda d: (-free[d], d))
        dc_id = next((d for d in candidates if free.get(d, 0) >= n), None)
        if dc_id is None:
            raise ApiError(400, NO_CAPACITY)
        rate = round(flavor.secure_per_vcpu * n, 4)
        self._check_balance(rate)
        env = dict(spec.env or {})
        keys = self.ssh_keys()
        public_key = env.get("PUBLIC_KEY") or ("\n".join(keys) if spec.start_ssh and keys else "")
        now = time.time()
        pod_id = new_id(14)
        pod = PodRecord(
            id=pod_id, name=spec.name, api_key=new_api_key(), machine_id=new_id(12),
            pod_host_id=f"{pod_id}-{secrets.token_hex(4)}", status="PROVISIONING", image=spec.image or "",
            gpu_id="", gpu_count=0, cloud="SECURE", data_center_id=dc_id, cost_per_hr=rate, created_at=now,
            status_since=now, args=spec.args or "", disk=spec.disk or 20, ports=list(spec.ports or []), env=env,
            registry=spec.registry, mounts=mounts, start_ssh=bool(spec.start_ssh), public_key=public_key,
            template_id=spec.template_id, min_vcpu=n, min_memory_gb=int(n * flavor.ram_gb_per_vcpu),
            provision_until=now + self.scenario.timing.provision_s,
            last_status_change=f"Rented by User: {time.strftime('%a %b %d %Y %H:%M:%S GMT+0000', time.gmtime(now))}",
            cpu_id=flavor.id, vcpu_count=n, memory_gb=n * flavor.ram_gb_per_vcpu,
        )
        self._bind_pod_faults(pod)
        self.store.save_pod(pod)
        self.store.open_interval(pod.id, now, rate)
        answer_500 = self.created_500("pod", api)
        log.info("CPU pod %s (%s) created in %s on %s x%d vCPU", pod.id, pod.name, dc_id, flavor.id, n)
        return pod, answer_500

    def created_500(self, resource: str, api: str) -> bool:
        """Whether a create_500_after_create fault fires for this create: the caller answers 500 after creating."""
        fault = self.faults.take("create_500_after_create",
                                 lambda f: f["api"] in ("any", api) and f.params.get("resource", "pod") == resource)
        return fault is not None

    def _bind_pod_faults(self, pod: PodRecord) -> None:
        if self.faults.take("stuck_provisioning"):
            pod.stuck = True
        slow = self.faults.take("slow_provisioning")
        if slow:
            pod.provision_until = pod.created_at + float(slow["delay"])
        never = self.faults.take("ssh_never_ready")
        if never:
            pod.ssh_mode = never["mode"]
        drop = self.faults.take("ssh_drop")
        if drop:
            pod.drop_after = float(drop["after"])
        if pod.interruptible:
            preempt = self.faults.take("preempt")
            if preempt:
                pod.preempt_after = float(preempt["after"])

    # --- pods: read ----------------------------------------------------------------------------------------

    def get_pod(self, pod_id: str, principal: Principal) -> PodRecord:
        if not principal.is_account and principal.pod_id != pod_id:
            raise ApiError(403, "access denied: a pod-scoped key can only read, stop or terminate its own pod")
        pod = self.store.get_pod(pod_id)
        if pod is None or pod.status == "TERMINATED":
            raise ApiError(404, f"pod {pod_id} not found")
        return pod

    def list_pods(self, principal: Principal) -> list[PodRecord]:
        self.require_account(principal)
        return self.store.pods()

    def workspace(self, pod: PodRecord) -> Path:
        if pod.volume_id:
            return self.home / "volumes" / pod.volume_id
        return self.home / "pods" / pod.id / "workspace"

    def pod_env(self, pod: PodRecord) -> dict[str, str]:
        env = dict(pod.env)
        env.update(
            RUNPOD_POD_ID=pod.id,
            RUNPOD_API_KEY=pod.api_key,
            RUNPOD_TCP_PORT_22=str(pod.ssh_port or ""),
            # pods share the host's network here: which host port each exposed http port binds (main.py of the
            # ComfyUI stand-in reads it); RunPod's proxy needs no such thing
            **{f"PISTACHIO_HTTP_PORT_{private}": str(public) for private, public in pod.http_ports.items()},
            RUNPOD_PUBLIC_IP=PUBLIC_IP,
            RUNPOD_DC_ID=pod.data_center_id,
            RUNPOD_POD_HOSTNAME=pod.pod_host_id,
            RUNPOD_GPU_COUNT=str(pod.gpu_count),
            RUNPOD_CPU_COUNT=str(pod.vcpu_count if pod.cpu_id else max(pod.min_vcpu, 4 * pod.gpu_count)),
            PISTACHIO_WORKSPACE=str(self.workspace(pod)),
            PISTACHIO_STANDIN_SCENARIO=str(self.standin_path),
        )
        if pod.volume_id:
            env["RUNPOD_VOLUME_ID"] = pod.volume_id
        if pod.public_key:
            env["PUBLIC_KEY"] = pod.public_key
        return env

    # --- pods: state changes -------------------------------------------------------------------------------

    def _set_status(self, pod: PodRecord, status: str, note: str = "") -> None:
        now = time.time()
        if pod.status in ACTIVE and status not in ACTIVE:
            self.store.close_interval(pod.id, now)
        if pod.status not in ACTIVE and status in ACTIVE:
            self.store.open_interval(pod.id, now, pod.cost_per_hr)
        pod.status = status
        pod.status_since = now
        if status == "RUNNING":
            pod.started_at = now
        if status in ("EXITED", "TERMINATED", "ERROR"):
            pod.ssh_port = None
            pod.http_ports = {}
        if status == "TERMINATED":
            pod.terminated_at = now
        if note:
            pod.last_status_change = f"{note}: {time.strftime('%a %b %d %Y %H:%M:%S GMT+0000', time.gmtime(now))}"
        self.store.save_pod(pod)

    def _own(self, pod_id: str, principal: Principal, action: str) -> PodRecord:
        if not principal.is_account and (principal.pod_id != pod_id or action not in ("stop", "terminate")):
            raise ApiError(403, "access denied: a pod-scoped key can only read, stop or terminate its own pod")
        return self.get_pod(pod_id, principal)

    async def act(self, pod_id: str, action: str, principal: Principal) -> PodRecord:
        pod = self._own(pod_id, principal, action)
        if action not in ACTIONS[pod.status]:
            raise ApiError(409, f"action {action!r} is not valid for a pod in status {pod.status}; "
                                f"valid: {', '.join(ACTIONS[pod.status]) or 'none'}")
        if pod.locked and action in ("stop", "restart"):
            raise ApiError(409, f"pod {pod_id} is locked; unlock it (PATCH locked=false) to {action} it")
        if action == "terminate":
            await self.terminate(pod)
        elif action == "stop":
            self._set_status(pod, "EXITED", "Exited by User")
            await self._host_call(pod.id, "stop")
        elif action == "start":
            self._resume(pod)
        elif action == "restart":
            await self._restart(pod, "Restarted by User")
        return self.store.get_pod(pod_id) or pod

    def _resume(self, pod: PodRecord) -> None:
        if pod.cpu_id:
            flavor = self.catalog.cpus[pod.cpu_id]
            if self.free_vcpus(flavor).get(pod.data_center_id, 0) < pod.vcpu_count:
                raise ApiError(400, NO_GPU_ON_HOST)
            self._check_balance(pod.cost_per_hr)
            pod.provision_until = time.time() + self.scenario.timing.provision_s / 2
            pod.dropped = False
            self._set_status(pod, "PROVISIONING", "Resumed by User")
            return
        gpu = self.catalog.gpus[pod.gpu_id]
        seed = self.seed_stock(gpu, pod.data_center_id, pod.cloud) or 0
        free = seed - self._usage(pod.cloud).get((pod.gpu_id, pod.data_center_id), 0)
        if self.faults.take("resume_no_gpu") or free < pod.gpu_count:
            raise ApiError(400, NO_GPU_ON_HOST)
        self._check_balance(pod.cost_per_hr)
        pod.provision_until = time.time() + self.scenario.timing.provision_s / 2
        pod.dropped = False
        self._set_status(pod, "PROVISIONING", "Resumed by User")

    async def _restart(self, pod: PodRecord, note: str) -> None:
        pod.provision_until = time.time()
        self._set_status(pod, "PROVISIONING", note)
        await self._host_call(pod.id, "stop")

    async def terminate(self, pod: PodRecord) -> None:
        self._set_status(pod, "TERMINATED", "Terminated by User")
        await self._host_call(pod.id, "stop")
        if not pod.volume_id:
            await asyncio.to_thread(shutil.rmtree, self.workspace(pod), True)
        log.info("pod %s terminated", pod.id)

    async def preempt(self, pod_id: str) -> PodRecord:
        pod = self.store.get_pod(pod_id)
        if pod is None or pod.status == "TERMINATED":
            raise ApiError(404, f"pod {pod_id} not found")
        if not pod.interruptible:
            raise ApiError(409, f"pod {pod_id} is on-demand; only interruptible pods can be preempted")
        if pod.status not in ACTIVE:
            raise ApiError(409, f"pod {pod_id} is {pod.status}; only a live pod can be preempted")
        pod.preempt_after = None
        self._set_status(pod, "EXITED", "Preempted")
        await self._host_call(pod.id, "stop")
        log.info("pod %s preempted", pod.id)
        return pod

    async def drop_ssh(self, pod_id: str) -> None:
        pod = self.store.get_pod(pod_id)
        if pod is None or pod.status != "RUNNING":
            raise ApiError(409, f"pod {pod_id} is not RUNNING")
        await self._host_call(pod_id, "drop_connections")

    async def update_pod(self, pod_id: str, changes: dict[str, Any], principal: Principal) -> PodRecord:
        self.require_account(principal)
        pod = self.get_pod(pod_id, principal)
        if "templateId" in changes:
            tpl = self.store.get_template(changes.pop("templateId"))
            if tpl is None:
                raise ApiError(404, "template not found")
            base = {"image": tpl.image, "args": tpl.args, "disk": tpl.disk, "ports": tpl.ports,
                    "registry": tpl.registry}
            env = {**tpl.env, **changes.get("env", {})}
            changes = {**base, **changes, "env": env}
        mounts = changes.get("mounts")
        if mounts:
            kind = "network" if "network" in mounts else "persistent" if "persistent" in mounts else None
            if kind and kind not in pod.mounts:
                raise ApiError(400, "mounts: the mount kind is fixed at create")
            if kind == "network":
                if not mounts["network"]:
                    raise ApiError(400, "mounts.network: clearing mounts is not supported")
                if mounts["network"][0]["volumeId"] != pod.volume_id:
                    raise ApiError(400, "mounts.network: the volumeId of a network mount is immutable")
            pod.mounts = {**pod.mounts, **mounts}
        restart = False
        for key, attr in (("name", "name"), ("image", "image"), ("args", "args"), ("disk", "disk"),
                          ("ports", "ports"), ("env", "env"), ("registry", "registry"), ("locked", "locked"),
                          ("globalNetworking", "global_networking")):
            if key in changes and getattr(pod, attr) != changes[key]:
                setattr(pod, attr, changes[key])
                restart |= key in ("image", "args", "ports", "env", "registry")
        if "env" in changes and "PUBLIC_KEY" in changes["env"]:
            pod.public_key = changes["env"]["PUBLIC_KEY"]
        self.store.save_pod(pod)
        if restart and pod.status in ACTIVE:
            await self._restart(pod, "Reset by User (config changed)")
        return self.store.get_pod(pod_id) or pod

    # --- the background task -------------------------------------------------------------------------------

    def attach_host(self, host: PodHostLike | None, error: str | None = None) -> None:
        self.host = host
        self.host_error = error

    async def _host_call(self, pod_id: str, method: str) -> None:
        async with self._locks[pod_id]:
            if self.host is None:
                return
            try:
                await asyncio.to_thread(getattr(self.host, method), pod_id)
            except Exception:
                log.exception("PodHost.%s(%s) failed", method, pod_id)

    def _spawn(self, pod_id: str, coro) -> None:
        self._busy.add(pod_id)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self._busy.discard(pod_id)
            if not t.cancelled() and t.exception():
                log.error("pod %s background step failed", pod_id, exc_info=t.exception())

        task.add_done_callback(done)

    async def _boot(self, pod_id: str) -> None:
        async with self._locks[pod_id]:
            pod = self.store.get_pod(pod_id)
            if pod is None or pod.status != "PROVISIONING":
                return
            pod.ssh_port = free_port()
            pod.http_ports = {str(port): free_port() for port in http_ports(pod.ports)}
            self._set_status(pod, "STARTING")
            if pod.ssh_mode != "normal":
                return  # the fault: nothing will ever listen on the port
            workspace = self.workspace(pod)
            workspace.mkdir(parents=True, exist_ok=True)
            try:
                for attempt in range(START_ATTEMPTS):
                    try:
                        await asyncio.to_thread(
                            self.host.start, pod.id, ssh_port=pod.ssh_port, public_key=pod.public_key,
                            env=self.pod_env(pod), workspace=workspace, start_cmd=pod.args or None,
                            timeout=SSHD_START_TIMEOUT_S,
                        )
                        break
                    except Exception as exc:  # PodStartError; this module does not import the host
                        # RunPod restarts a container that fails to start; here the usual causes are another
                        # process taking the port between free_port() and sshd's bind ("Address already in use")
                        # and a rare `unshare` failure on a loaded machine: start again, on a fresh port
                        current = self.store.get_pod(pod_id)
                        if attempt == START_ATTEMPTS - 1 or current is None or current.status != "STARTING":
                            raise  # out of attempts, or terminated meanwhile: never bring a pod back
                        log.warning("pod %s failed to start (%s); starting it again", pod_id, exc)
                        current.ssh_port = free_port()
                        self.store.save_pod(current)
                        pod = current
            except Exception as exc:
                log.exception("PodHost.start(%s) failed", pod_id)
                pod = self.store.get_pod(pod_id)
                if pod is not None and pod.status == "STARTING":
                    self._set_status(pod, "ERROR", f"Container failed to start ({type(exc).__name__}: {exc})")

    async def _check_ready(self, pod_id: str) -> None:
        ready = await asyncio.to_thread(self.host.ssh_ready, pod_id)
        if not ready:
            return
        pod = self.store.get_pod(pod_id)
        if pod is not None and pod.status == "STARTING":
            self._set_status(pod, "RUNNING")

    async def _drop(self, pod: PodRecord) -> None:
        pod.dropped = True
        self.store.save_pod(pod)
        await self._host_call(pod.id, "drop_connections")
        log.info("pod %s: SSH connections dropped (fault)", pod.id)

    async def tick(self) -> None:
        now = time.time()
        timing = self.scenario.timing
        for pod in self.store.pods():
            if pod.id in self._busy:
                continue
            if pod.status == "PROVISIONING":
                if pod.stuck or now < pod.provision_until:
                    continue
                if self.host is None:
                    if self.host_error:
                        self._set_status(pod, "ERROR", f"No pod host: {self.host_error}")
                    continue
                self._spawn(pod.id, self._boot(pod.id))
            elif pod.status == "STARTING":
                if now < pod.status_since + timing.start_s or pod.ssh_mode == "starting":
                    continue
                if pod.ssh_mode == "refused":
                    self._set_status(pod, "RUNNING")
                elif self.host is not None:
                    self._spawn(pod.id, self._check_ready(pod.id))
            elif pod.status == "RUNNING" and pod.started_at is not None:
                if pod.preempt_after is not None and now >= pod.started_at + pod.preempt_after:
                    self._spawn(pod.id, self.preempt(pod.id))
                elif pod.drop_after is not None and not pod.dropped and now >= pod.started_at + pod.drop_after:
                    self._spawn(pod.id, self._drop(pod))

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("tick failed")
            await asyncio.sleep(self.scenario.timing.tick_s)

    def reconcile_after_restart(self) -> None:
        """A restarted server: pods whose sshd died with the old server boot again (as after a host reboot)."""
        if self.host is None:
            return
        for pod in self.store.pods():
            if pod.status in ("STARTING", "RUNNING") and pod.ssh_mode == "normal":
                try:
                    alive = bool(self.host.processes(pod.id))
                except Exception:
                    alive = False
                if not alive:
                    pod.provision_until = time.time()
                    self._set_status(pod, "PROVISIONING", "Restarted by host")

    async def shutdown(self, terminate_pods: bool) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if terminate_pods:
            for pod in self.store.pods():
                await self.terminate(pod)

    # --- volumes -------------------------------------------------------------------------------------------

    def create_volume(self, name: str, size: int, dc_id: str, vtype: str | None, principal: Principal
                      ) -> VolumeRecord:
        self.require_account(principal)
        dc = self.catalog.datacenters.get(dc_id)
        if dc is None:
            raise ApiError(400, f"unknown data center {dc_id!r}; see GET /v2/catalog/datacenters")
        if not dc.supports_volumes:
            raise ApiError(400, f"data center {dc_id} does not offer network volumes")
        vtype = vtype or dc.volume_types[0]
        if vtype not in dc.volume_types:
            raise ApiError(400, f"data center {dc_id} does not offer {vtype} network volumes")
        if not 10 <= size <= 4096:
            raise ApiError(400, "size must be between 10 and 4096 GB")
        vol = VolumeRecord(id=new_id(10), name=name, size=size, data_center_id=dc_id, type=vtype)
        (self.home / "volumes" / vol.id).mkdir(parents=True, exist_ok=True)
        self.store.save_volume(vol, time.time())
        return vol

    def get_volume(self, volume_id: str, principal: Principal) -> VolumeRecord:
        self.require_account(principal)
        vol = self.store.get_volume(volume_id)
        if vol is None:
            raise ApiError(404, f"network volume {volume_id} not found")
        return vol

    def list_volumes(self, principal: Principal) -> list[VolumeRecord]:
        self.require_account(principal)
        return self.store.volumes()

    def update_volume(self, volume_id: str, principal: Principal, *, name: str | None = None,
                      size: int | None = None) -> VolumeRecord:
        vol = self.get_volume(volume_id, principal)
        if size is not None:
            if size < vol.size:
                raise ApiError(400, f"size can only grow (volume {volume_id} is {vol.size} GB, asked {size} GB)")
            if size > 4096:
                raise ApiError(400, "size must be at most 4096 GB")
            vol.size = size
        if name is not None:
            vol.name = name
        self.store.save_volume(vol, time.time())
        return vol

    def delete_volume(self, volume_id: str, principal: Principal) -> None:
        vol = self.get_volume(volume_id, principal)
        users = [p.id for p in self.store.pods() if p.volume_id == vol.id]
        if users:
            raise ApiError(409, f"network volume {volume_id} is attached to pod(s) {', '.join(users)}; "
                                "terminate them first")
        self.store.delete_volume(volume_id)
        shutil.rmtree(self.home / "volumes" / volume_id, ignore_errors=True)

    # --- templates -----------------------------------------------------------------------------------------

    def create_template(self, tpl: TemplateRecord, principal: Principal) -> TemplateRecord:
        self.require_account(principal)  # names need not be unique: the spec forces nothing (issue 18)
        tpl.id = new_id(10)
        self.store.save_template(tpl, time.time())
        return tpl

    def get_template(self, template_id: str, principal: Principal) -> TemplateRecord:
        self.require_account(principal)
        tpl = self.store.get_template(template_id)
        if tpl is None:
            raise ApiError(404, f"template {template_id} not found")
        return tpl

    def list_templates(self, principal: Principal) -> list[TemplateRecord]:
        self.require_account(principal)
        return self.store.templates()

    def save_template(self, tpl: TemplateRecord, principal: Principal) -> TemplateRecord:
        """Replace an existing template (same id)."""
        self.require_account(principal)
        created = self.store.template_created(tpl.id) or time.time()
        self.store.save_template(tpl, created)
        return tpl

    def delete_template(self, template_id: str, principal: Principal) -> None:
        self.get_template(template_id, principal)
        self.store.delete_template(template_id)

    # --- account -------------------------------------------------------------------------------------------

    def ssh_keys(self) -> list[str]:
        return list(self.store.get_meta("ssh_keys", []))

    def set_ssh_keys(self, keys: list[str], principal: Principal) -> list[str]:
        self.require_account(principal)
        self.store.set_meta("ssh_keys", list(keys))
        return keys

    def billed(self) -> dict[str, float]:
        return billed_by_pod(self.store.intervals(), time.time())

    def balance(self) -> float:
        return self.scenario.account.balance_usd - sum(self.billed().values())
