"""What the tool needs from RunPod, independent of the wire protocol.

Adapters (REST v2 over httpx, GraphQL over the runpod SDK 1.12) translate these calls and models to their
protocol. The sandbox is not an adapter: it is another base URL both adapters talk to.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..errors import PistachioError


class PodStatus(StrEnum):
    PROVISIONING = "PROVISIONING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    EXITED = "EXITED"
    ERROR = "ERROR"
    TERMINATED = "TERMINATED"


class Stock(StrEnum):
    NONE = "NONE"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class DataCenterStock(BaseModel):
    data_center_id: str
    stock: Stock


class GpuType(BaseModel):
    id: str  # exact RunPod id, e.g. "NVIDIA RTX A6000"
    name: str  # display name, e.g. "RTX A6000"
    memory_gb: int
    secure_price: float | None = None  # USD per GPU-hour, on-demand
    community_price: float | None = None
    stock: Stock = Stock.NONE  # best stock over all data centers
    data_centers: list[DataCenterStock] = Field(default_factory=list)


class PodRequest(BaseModel):
    name: str  # unique per attempt: create is looked up by name after errors
    image: str | None = None
    template_id: str | None = None
    gpu_type_id: str
    gpu_count: int = 1
    cloud: str = "SECURE"
    data_center_ids: list[str] = Field(default_factory=list)
    network_volume_id: str | None = None
    volume_mount_path: str = "/workspace"
    volume_gb: int | None = None  # persistent pod volume when no network volume
    container_disk_gb: int = 50
    ports: list[str] = Field(default_factory=lambda: ["22/tcp"])
    env: dict[str, str] = Field(default_factory=dict)
    start_ssh: bool = True
    interruptible: bool = False  # spot: GraphQL adapter only (REST v2 has no such field)
    bid_per_gpu: float | None = None  # spot bid in USD per GPU-hour; None = the current minimum bid
    min_memory_gb: int | None = None  # GraphQL minMemoryInGb; REST v2 has no such constraint
    args: str | None = None  # the container start command (REST v2 `args`, GraphQL `dockerArgs`); None: the image's


class CpuFlavor(BaseModel):
    """A CPU pod flavour (REST v2 CpuType): vCPUs from vcpu_min to vcpu_max in powers of two, RAM per vCPU, a
    price per vCPU-hour, and POD stock (for `vcpu_count` vCPUs when asked) overall and per data center."""

    id: str  # e.g. "cpu3c"
    name: str  # e.g. "Compute-Optimized"
    group: str = ""  # e.g. "Gen 3"
    vcpu_min: int
    vcpu_max: int
    ram_gb_per_vcpu: float
    price_per_vcpu_hr: float  # secure, on-demand
    stock: Stock = Stock.NONE
    data_centers: list[DataCenterStock] = Field(default_factory=list)

    def price_per_hr(self, vcpu_count: int) -> float:
        return self.price_per_vcpu_hr * vcpu_count


class CpuPodRequest(BaseModel):
    """A CPU pod (REST v2 CreatePodRequest with `cpu: {id, vcpuCount}`; RAM follows from the flavour). CPU pods
    take a container disk and/or a network volume, never a persistent pod volume."""

    name: str  # unique per attempt: create is looked up by name after errors
    flavor_id: str
    vcpu_count: int = Field(ge=2)  # a power of two within the flavour's range
    image: str | None = None
    template_id: str | None = None
    data_center_ids: list[str] = Field(default_factory=list)
    network_volume_id: str | None = None
    volume_mount_path: str = "/workspace"
    container_disk_gb: int = 20
    ports: list[str] = Field(default_factory=lambda: ["22/tcp"])
    env: dict[str, str] = Field(default_factory=dict)
    start_ssh: bool = True
    args: str | None = None


class Pod(BaseModel):
    id: str
    name: str
    status: PodStatus
    gpu_type_id: str | None = None  # None for a CPU pod
    gpu_count: int = 1
    cpu_flavor_id: str | None = None  # a CPU pod's flavour
    vcpu_count: int | None = None  # a CPU pod's vCPUs
    memory_gb: int | None = None  # a CPU pod's RAM
    cost_per_hr: float = 0.0
    data_center_id: str | None = None
    network_volume_id: str | None = None
    image: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ssh_host: str | None = None  # direct SSH endpoint; None until sshd is up
    ssh_port: int | None = None
    ssh_user: str = "root"  # the user the pod's sshd accepts (REST v2 ssh.direct.username; RunPod's is root)
    http_ports: dict[int, int] = Field(default_factory=dict)  # exposed `N/http` port -> its public port (running)
    interruptible: bool = False
    uptime_s: int | None = None
    created_at: datetime | None = None

    @property
    def ssh_ready(self) -> bool:
        return self.status == PodStatus.RUNNING and self.ssh_host is not None and self.ssh_port is not None


class NetworkVolume(BaseModel):
    id: str
    name: str
    size_gb: int
    data_center_id: str


class Template(BaseModel):
    id: str
    name: str
    image: str
    container_disk_gb: int = 50
    volume_gb: int = 0
    volume_mount_path: str = "/workspace"
    ports: list[str] = Field(default_factory=lambda: ["22/tcp"])
    env: dict[str, str] = Field(default_factory=dict)


# --- errors ---------------------------------------------------------------------------------------------


class RunPodApiError(PistachioError):
    """An error answered by (or on the way to) the RunPod API."""

    def __init__(self, cause: str, fix: str | None = None, status: int | None = None) -> None:
        self.status = status
        super().__init__(cause, fix)


class AuthError(RunPodApiError):
    pass


class NotFoundError(RunPodApiError):
    pass


class ConflictError(RunPodApiError):
    """The action is not valid in the resource's current state (HTTP 409)."""


class ValidationError(RunPodApiError):
    """The request is malformed (HTTP 422 / GraphQL validation); never retried."""


class NoCapacityError(RunPodApiError):
    """No machine with the requested GPU type is free (in the requested data centers)."""


class InsufficientBalanceError(RunPodApiError):
    pass


class RateLimitedError(RunPodApiError):
    def __init__(self, cause: str, retry_after: float | None = None, status: int | None = 429) -> None:
        self.retry_after = retry_after
        super().__init__(cause, "wait and retry; RunPod is rate-limiting this key", status)


class TransientError(RunPodApiError):
    """5xx or a connection failure: worth retrying (after checking whether a create took effect)."""


# --- the port -------------------------------------------------------------------------------------------


@runtime_checkable
class RunPodApi(Protocol):
    def list_gpu_types(self) -> list[GpuType]: ...

    def create_pod(self, request: PodRequest) -> Pod: ...
    def list_cpu_flavors(self, vcpu_count: int = 2) -> list[CpuFlavor]: ...  # stock for pods of that many vCPUs
    def create_cpu_pod(self, request: CpuPodRequest) -> Pod: ...  # REST v2 only
    def get_pod(self, pod_id: str) -> Pod | None: ...  # None when unknown or terminated
    def list_pods(self) -> list[Pod]: ...
    def find_pod_by_name(self, name: str) -> Pod | None: ...
    def update_pod(self, pod_id: str, *, image: str | None = None, env: dict[str, str] | None = None) -> Pod: ...
    def stop_pod(self, pod_id: str) -> None: ...
    def start_pod(self, pod_id: str) -> None: ...
    def terminate_pod(self, pod_id: str) -> None: ...  # idempotent: terminating a gone pod is not an error

    def create_volume(self, name: str, size_gb: int, data_center_id: str) -> NetworkVolume: ...
    def get_volume(self, volume_id: str) -> NetworkVolume | None: ...
    def list_volumes(self) -> list[NetworkVolume]: ...
    def update_volume(
        self, volume_id: str, *, name: str | None = None, size_gb: int | None = None
    ) -> NetworkVolume: ...
    def delete_volume(self, volume_id: str) -> None: ...

    def create_template(self, template: Template) -> Template: ...  # template.id is ignored
    def get_template(self, template_id: str) -> Template | None: ...
    def list_templates(self) -> list[Template]: ...
    def update_template(self, template: Template) -> Template: ...
    def delete_template(self, template_id: str) -> None: ...

    def close(self) -> None: ...  # release the adapter's connections; the object is not used afterwards
