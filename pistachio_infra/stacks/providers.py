"""Pulumi dynamic providers for RunPod network volumes, templates and pods, over the RunPodApi port.

The engine runs these in a separate process (`python -m pulumi.dynamic`) after unpickling the provider objects
with dill. The classes are pickled *by reference* (module path + class name), so this module must stay importable
under this name and must have no import-time side effects. Provider objects hold only plain data: the RunPod client
and its credentials are made at call time from the environment (`connect(resolve_cloud())`), so no key is ever
pickled into Pulumi state.

Inputs are normalised in `check` (defaults filled in, numbers made ints: Pulumi carries every number as a float).
Outputs repeat the inputs (as read back from RunPod on refresh) plus what RunPod computes; `diff` compares the
input keys of the old outputs with the new inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.runtime.rpc import UNKNOWN

from ..runpod.port import NetworkVolume as VolumeModel
from ..runpod.port import Pod as PodModel
from ..runpod.port import PodRequest, RunPodApi
from ..runpod.port import Template as TemplateModel

PROVIDER_KEY = "__provider"
VOLUME_MIN_GB, VOLUME_MAX_GB = 10, 4096


@contextmanager
def runpod_api() -> Iterator[RunPodApi]:
    """A RunPod client made from the environment (RUNPOD_API_KEY / credentials file / sandbox), closed after use."""
    from ..endpoints import resolve_cloud
    from ..runpod import connect

    api = connect(resolve_cloud())
    try:
        yield api
    finally:
        api.close()


def _known(value: Any) -> bool:
    return value is not UNKNOWN and value != UNKNOWN


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, float | int) and not isinstance(value, bool) else value


class _Provider(ResourceProvider):
    """Shared check/diff: subclasses name their inputs, which inputs force a replacement, and how to normalise."""

    serialize_as_secret_always = False  # nothing secret is captured: the key is read at call time
    inputs: ClassVar[tuple[str, ...]] = ()
    replace_on: ClassVar[tuple[str, ...]] = ()
    delete_before_replace: ClassVar[bool] = False
    defaults: ClassVar[Mapping[str, Any]] = {}

    def normalise(self, props: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key in self.inputs:
            value = props.get(key, self.defaults.get(key))
            if isinstance(value, list):
                value = [_int(v) for v in value]
            elif isinstance(value, dict):
                value = {str(k): str(v) for k, v in value.items()} if _known(value) else value
            out[key] = _int(value)
        return out

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        return []

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs = self.normalise(news)
        olds = self.normalise(_olds) if _olds else {}
        return CheckResult(inputs, self.validate(olds, inputs))

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        olds, news = self.normalise(_olds), self.normalise(_news)
        changed = [k for k in self.inputs if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k in self.replace_on]
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=[k for k in self.inputs if k not in changed],
            delete_before_replace=self.delete_before_replace if replaces else None,
        )

    @staticmethod
    def gone() -> ReadResult:
        """What `read` answers for a resource deleted behind Pulumi's back: refresh drops it from the state."""
        return ReadResult(id_="", outs={})


def _required(news: dict[str, Any], *keys: str) -> list[CheckFailure]:
    return [CheckFailure(k, f"{k} is required") for k in keys if _known(news.get(k)) and not news.get(k)]


# --- network volume ----------------------------------------------------------------------------------------


class NetworkVolumeProvider(_Provider):
    """Replace when the data center changes (volumes are pinned); rename and grow in place; never shrink."""

    inputs = ("name", "size_gb", "data_center_id")
    replace_on = ("data_center_id",)
    defaults: ClassVar[Mapping[str, Any]] = {"size_gb": 100}

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = _required(news, "name", "data_center_id")
        size = news.get("size_gb")
        if _known(size):
            if not isinstance(size, int) or not VOLUME_MIN_GB <= size <= VOLUME_MAX_GB:
                failures.append(
                    CheckFailure("size_gb", f"size_gb must be {VOLUME_MIN_GB}..{VOLUME_MAX_GB}, got {size!r}")
                )
            elif (
                olds.get("data_center_id") == news.get("data_center_id")
                and isinstance(olds.get("size_gb"), int)
                and size < olds["size_gb"]
            ):
                failures.append(
                    CheckFailure(
                        "size_gb",
                        f"a network volume can grow but never shrink ({olds['size_gb']} GB -> {size} GB); "
                        "keep the size or destroy the volume",
                    )
                )
        return failures

    @staticmethod
    def outs(volume: VolumeModel) -> dict[str, Any]:
        return {"name": volume.name, "size_gb": volume.size_gb, "data_center_id": volume.data_center_id}

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = self.normalise(props)
        with runpod_api() as api:
            volume = api.create_volume(p["name"], p["size_gb"], p["data_center_id"])
        return CreateResult(volume.id, self.outs(volume))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with runpod_api() as api:
            volume = api.get_volume(id_)
        if volume is None:
            return self.gone()
        outs = self.outs(volume)
        return ReadResult(volume.id, outs, inputs=outs)

    def update(self, id_: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        olds, news = self.normalise(_olds), self.normalise(_news)
        with runpod_api() as api:
            volume = api.update_volume(
                id_,
                name=news["name"] if news["name"] != olds["name"] else None,
                size_gb=news["size_gb"] if news["size_gb"] != olds["size_gb"] else None,
            )
        return UpdateResult(self.outs(volume))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        with runpod_api() as api:
            if api.get_volume(id_) is not None:
                api.delete_volume(id_)


# --- template ----------------------------------------------------------------------------------------------


class TemplateProvider(_Provider):
    """Every template field updates in place (pods already made from it are not affected)."""

    inputs = ("name", "image", "container_disk_gb", "volume_gb", "volume_mount_path", "ports", "env")
    defaults: ClassVar[Mapping[str, Any]] = {
        "container_disk_gb": 50,
        "volume_gb": 0,
        "volume_mount_path": "/workspace",
        "ports": ["22/tcp"],
        "env": {},
    }

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = _required(news, "name", "image")
        disk = news.get("container_disk_gb")
        if _known(disk) and (not isinstance(disk, int) or disk < 1):
            failures.append(CheckFailure("container_disk_gb", f"container_disk_gb must be >= 1, got {disk!r}"))
        return failures

    @staticmethod
    def model(p: dict[str, Any], id_: str = "") -> TemplateModel:
        return TemplateModel(id=id_, **p)

    @staticmethod
    def outs(template: TemplateModel) -> dict[str, Any]:
        return template.model_dump(exclude={"id"})

    def create(self, props: dict[str, Any]) -> CreateResult:
        with runpod_api() as api:
            template = api.create_template(self.model(self.normalise(props)))
        return CreateResult(template.id, self.outs(template))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with runpod_api() as api:
            template = api.get_template(id_)
        if template is None:
            return self.gone()
        outs = self.outs(template)
        return ReadResult(template.id, outs, inputs=outs)

    def update(self, id_: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        with runpod_api() as api:
            template = api.update_template(self.model(self.normalise(_news), id_))
        return UpdateResult(self.outs(template))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        with runpod_api() as api:
            if api.get_template(id_) is not None:
                api.delete_template(id_)


# --- pod ---------------------------------------------------------------------------------------------------


class PodProvider(_Provider):
    """A long-lived pod. GPU, placement, image, volume and template replace it (delete first: the name is unique);
    env updates in place (RunPod restarts the pod). Create waits (bounded) until SSH answers."""

    inputs = (
        "name",
        "gpu_type_id",
        "gpu_count",
        "cloud",
        "data_center_id",
        "network_volume_id",
        "template_id",
        "image",
        "container_disk_gb",
        "volume_mount_path",
        "ports",
        "env",
    )
    replace_on = (
        "name",
        "gpu_type_id",
        "gpu_count",
        "cloud",
        "data_center_id",
        "network_volume_id",
        "template_id",
        "image",
        "container_disk_gb",
        "volume_mount_path",
        "ports",
    )
    delete_before_replace = True
    defaults: ClassVar[Mapping[str, Any]] = {
        "gpu_count": 1,
        "cloud": "SECURE",
        "container_disk_gb": 50,
        "volume_mount_path": "/workspace",
        "ports": ["22/tcp"],
        "env": {},
    }

    def __init__(self, ready_timeout_s: float = 600.0, poll_s: float = 2.0) -> None:
        super().__init__()
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s

    def validate(self, olds: dict[str, Any], news: dict[str, Any]) -> list[CheckFailure]:
        failures = _required(news, "name", "gpu_type_id")
        if not news.get("image") and not news.get("template_id"):
            failures.append(CheckFailure("image", "a pod needs an image or a template_id"))
        count = news.get("gpu_count")
        if _known(count) and (not isinstance(count, int) or count < 1):
            failures.append(CheckFailure("gpu_count", f"gpu_count must be >= 1, got {count!r}"))
        return failures

    @staticmethod
    def outs(pod: PodModel, p: dict[str, Any]) -> dict[str, Any]:
        managed_env = p.get("env") or {}
        env = {k: v for k, v in pod.env.items() if k in managed_env} if pod.env else managed_env
        return {
            **p,
            "gpu_type_id": pod.gpu_type_id or p["gpu_type_id"],
            "gpu_count": pod.gpu_count,
            # what RunPod reports wins (drift shows on refresh); what it does not report stays as requested
            "network_volume_id": pod.network_volume_id or p["network_volume_id"],
            "image": pod.image if (pod.image and p["image"]) else p["image"],
            "env": env,
            "status": str(pod.status),
            "placed_data_center_id": pod.data_center_id,
            "ssh_host": pod.ssh_host,
            "ssh_port": pod.ssh_port,
            "ssh_user": pod.ssh_user,
            "cost_per_hr": pod.cost_per_hr,
        }

    def _wait_ready(self, api: RunPodApi, pod: PodModel) -> PodModel:
        from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

        def not_settled(p: PodModel | None) -> bool:
            return p is not None and not p.ssh_ready and p.status in {"PROVISIONING", "STARTING", "RUNNING"}

        retrying = Retrying(
            retry=retry_if_result(not_settled),
            stop=stop_after_delay(self.ready_timeout_s),
            wait=wait_fixed(self.poll_s),
            retry_error_callback=lambda state: state.outcome.result(),
        )
        latest = retrying(api.get_pod, pod.id)
        if latest is None or not latest.ssh_ready:
            pulumi.log.warn(f"pod {pod.id} is not reachable over SSH yet; `env refresh` later updates its endpoint")
        return latest or pod

    def create(self, props: dict[str, Any]) -> CreateResult:
        p = self.normalise(props)
        with runpod_api() as api:
            return CreateResult(*self._create(api, p))

    def _create(self, api: RunPodApi, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        pod = api.find_pod_by_name(p["name"])  # a create that failed after the pod existed is adopted, not doubled
        if pod is None:
            pod = api.create_pod(
                PodRequest(
                    name=p["name"],
                    image=p["image"],
                    template_id=p["template_id"],
                    gpu_type_id=p["gpu_type_id"],
                    gpu_count=p["gpu_count"],
                    cloud=p["cloud"],
                    data_center_ids=[p["data_center_id"]] if p["data_center_id"] else [],
                    network_volume_id=p["network_volume_id"],
                    volume_mount_path=p["volume_mount_path"],
                    container_disk_gb=p["container_disk_gb"],
                    ports=p["ports"],
                    env=p["env"],
                )
            )
        pod = self._wait_ready(api, pod)
        return pod.id, self.outs(pod, p)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with runpod_api() as api:
            pod = api.get_pod(id_)
        if pod is None:
            return self.gone()
        outs = self.outs(pod, self.normalise(props))
        return ReadResult(pod.id, outs, inputs={k: outs[k] for k in self.inputs})

    def update(self, id_: str, _olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        news = self.normalise(_news)
        with runpod_api() as api:
            pod = self._wait_ready(api, api.update_pod(id_, env=news["env"]))
        return UpdateResult(self.outs(pod, news))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        with runpod_api() as api:
            api.terminate_pod(id_)  # idempotent on the port


# --- resources (what stack programs declare) ---------------------------------------------------------------


def _props(keys: tuple[str, ...], given: Mapping[str, Any], computed: tuple[str, ...] = ()) -> dict[str, Any]:
    return {**{k: given.get(k) for k in keys}, **dict.fromkeys(computed)}


class NetworkVolume(Resource, module="runpod", name="NetworkVolume"):
    name: pulumi.Output[str]
    size_gb: pulumi.Output[int]
    data_center_id: pulumi.Output[str]

    def __init__(self, resource_name: str, *, opts: pulumi.ResourceOptions | None = None, **inputs: Any) -> None:
        super().__init__(
            NetworkVolumeProvider(), resource_name, _props(NetworkVolumeProvider.inputs, inputs), opts
        )


class Template(Resource, module="runpod", name="Template"):
    name: pulumi.Output[str]
    image: pulumi.Output[str]
    container_disk_gb: pulumi.Output[int]
    volume_gb: pulumi.Output[int]
    volume_mount_path: pulumi.Output[str]
    ports: pulumi.Output[list]
    env: pulumi.Output[dict]

    def __init__(self, resource_name: str, *, opts: pulumi.ResourceOptions | None = None, **inputs: Any) -> None:
        given = {k: v for k, v in inputs.items() if v is not None}
        props = {**TemplateProvider.defaults, **given}
        super().__init__(TemplateProvider(), resource_name, _props(TemplateProvider.inputs, props), opts)


POD_COMPUTED = ("status", "placed_data_center_id", "ssh_host", "ssh_port", "ssh_user", "cost_per_hr")


class Pod(Resource, module="runpod", name="Pod"):
    name: pulumi.Output[str]
    gpu_type_id: pulumi.Output[str]
    data_center_id: pulumi.Output[str | None]
    network_volume_id: pulumi.Output[str | None]
    template_id: pulumi.Output[str | None]
    image: pulumi.Output[str | None]
    env: pulumi.Output[dict]
    status: pulumi.Output[str]
    placed_data_center_id: pulumi.Output[str | None]
    ssh_host: pulumi.Output[str | None]
    ssh_port: pulumi.Output[int | None]
    ssh_user: pulumi.Output[str]
    cost_per_hr: pulumi.Output[float]

    def __init__(
        self,
        resource_name: str,
        *,
        opts: pulumi.ResourceOptions | None = None,
        ready_timeout_s: float = 600.0,
        **inputs: Any,
    ) -> None:
        given = {k: v for k, v in inputs.items() if v is not None}
        props = {**PodProvider.defaults, **given}
        super().__init__(
            PodProvider(ready_timeout_s=ready_timeout_s),
            resource_name,
            _props(PodProvider.inputs, props, POD_COMPUTED),
            opts,
        )

