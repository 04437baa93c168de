"""The environment stack: what stays up between training jobs.

- a model-cache network volume, in a data center where the wanted GPU classes have stock (base model files are then
  downloaded once per data center, and every job placed there mounts them);
- a pod template (the pinned pod image, SSH port, env, disk);
- optionally a long-lived ComfyUI pod in the volume's data center, mounting the volume.

Settings come from stack config under the `pistachio:` namespace (the Automation driver sets them from the
`env` command's options; `pulumi config set pistachio:KEY VALUE` for users of the `stacks/` project):

    dataCenter      pinned data center (picked from live stock and pinned on the first `env up`)
    gpus            GPU classes or RunPod GPU type ids the volume should be close to (default: every class)
    volumeGb        model-cache size in GB (default 100; grows in place, never shrinks)
    image           pod image (default: data/sources.toml [image])
    containerDiskGb template disk (default 50)
    templateEnv     extra env for the template (object)
    comfyui         true to keep a ComfyUI pod up (default false)
    comfyuiGpu      its GPU class or id (default: the first of `gpus`)
    namePrefix      prefix of RunPod names (default "pistachio")
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from .outputs import CONFIG_NAMESPACE
from .providers import NetworkVolume, Pod, Template

COMFYUI_PORTS = ["22/tcp", "8188/http"]


@dataclass(frozen=True)
class EnvSettings:
    stack: str
    gpu_type_ids: tuple[str, ...]
    data_center_id: str | None = None
    volume_gb: int = 100
    image: str = ""
    container_disk_gb: int = 50
    template_env: dict[str, str] = field(default_factory=dict)
    comfyui: bool = False
    comfyui_gpu_type_id: str | None = None
    name_prefix: str = "pistachio"

    @property
    def base_name(self) -> str:
        return f"{self.name_prefix}-{self.stack}"


def default_image() -> str:
    from .. import catalog

    return catalog.sources().image.name


def settings_from_config(config: pulumi.Config | None = None, stack: str | None = None) -> EnvSettings:
    from .placement import default_gpu_names, resolve_gpu_type_ids

    cfg = config or pulumi.Config(CONFIG_NAMESPACE)
    gpus = cfg.get_object("gpus") or default_gpu_names()
    if isinstance(gpus, str):
        gpus = [gpus]
    comfyui_gpu = cfg.get("comfyuiGpu")
    return EnvSettings(
        stack=stack or pulumi.get_stack(),
        gpu_type_ids=tuple(resolve_gpu_type_ids(gpus)),
        data_center_id=cfg.get("dataCenter") or None,
        volume_gb=cfg.get_int("volumeGb") or 100,
        image=cfg.get("image") or default_image(),
        container_disk_gb=cfg.get_int("containerDiskGb") or 50,
        template_env={str(k): str(v) for k, v in (cfg.get_object("templateEnv") or {}).items()},
        comfyui=cfg.get_bool("comfyui") or False,
        comfyui_gpu_type_id=resolve_gpu_type_ids([comfyui_gpu])[0] if comfyui_gpu else None,
        name_prefix=cfg.get("namePrefix") or "pistachio",
    )


def choose_data_center(gpu_type_ids: tuple[str, ...]) -> str:
    """Live stock decides: the data center where most of the wanted GPU types can be rented now."""
    from .placement import pick_data_center
    from .providers import runpod_api

    with runpod_api() as api:
        return pick_data_center(api.list_gpu_types(), gpu_type_ids)


def pod_public_key() -> str | None:
    from ..paths import ssh_key_path

    pub = ssh_key_path().with_suffix(".pub")
    return pub.read_text().strip() if pub.is_file() else None


def declare(settings: EnvSettings) -> dict[str, pulumi.Output]:
    """Declare the environment's resources; returns (and exports) the stack outputs."""
    data_center = settings.data_center_id or choose_data_center(settings.gpu_type_ids)
    if not settings.data_center_id:
        pulumi.log.warn(
            f"placing the environment in {data_center} (live stock); pin it with "
            f"`pulumi config set {CONFIG_NAMESPACE}:dataCenter {data_center}` so later runs keep it"
        )
    volume = NetworkVolume(
        "model-cache",
        name=f"{settings.base_name}-models",
        size_gb=settings.volume_gb,
        data_center_id=data_center,
    )
    template = Template(
        "pod-template",
        name=settings.base_name,
        image=settings.image,
        container_disk_gb=settings.container_disk_gb,
        ports=["22/tcp"],
        env=dict(settings.template_env),
    )
    exported: dict[str, pulumi.Output] = {
        "volume_id": volume.id,
        "data_center_id": volume.data_center_id,
        "volume_gb": volume.size_gb,
        "template_id": template.id,
        "image": template.image,
    }
    if settings.comfyui:
        env = {"PISTACHIO_ROLE": "comfyui"}
        key = pod_public_key()
        if key:
            env["PUBLIC_KEY"] = key
        pod = Pod(
            "comfyui",
            name=f"{settings.base_name}-comfyui",
            gpu_type_id=settings.comfyui_gpu_type_id or settings.gpu_type_ids[0],
            data_center_id=volume.data_center_id,
            network_volume_id=volume.id,
            template_id=template.id,
            image=template.image,
            container_disk_gb=settings.container_disk_gb,
            ports=COMFYUI_PORTS,
            env=env,
        )
        exported |= {
            "comfyui_pod_id": pod.id,
            "comfyui_ssh_host": pod.ssh_host,
            "comfyui_ssh_port": pod.ssh_port,
            "comfyui_ssh_user": pod.ssh_user,
        }
    for name, value in exported.items():
        pulumi.export(name, value)
    return exported


def env_program() -> None:
    """The stack program (inline for Automation, and `stacks/__main__.py` for `pulumi up`)."""
    declare(settings_from_config())
