"""GPU classes, per-tier training profiles, base-model manifests and pinned sources, loaded from data/*.toml.

Each data file is read once per process (`clear_cache()` forgets them). Everything here is plain data; the
decisions behind the numbers are written as comments in the TOML files themselves.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .paths import data_dir

EFFECTIVE_BATCH = 8  # micro_batch × grad_accum in every tier (see profiles.toml)


class GpuClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    gpu_type_id: str
    display_name: str
    equivalent_ids: tuple[str, ...] = ()
    vram_gb: int
    tier: int
    min_system_ram_gb: int = Field(gt=28)
    price_hint_usd_hr: float = Field(gt=0)

    @property
    def gpu_type_ids(self) -> tuple[str, ...]:
        """Every RunPod id that belongs to this class, the one we ask for first."""
        return (self.gpu_type_id, *self.equivalent_ids)


class TrainingProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: int
    micro_batch: int = Field(ge=1)
    grad_accum: int = Field(ge=1)
    activation_checkpointing: bool | Literal["unsloth"]
    blocks_to_swap: int = Field(ge=0, le=38)
    transformer_dtype: Literal["bfloat16", "float16", "float8", "float8_e4m3fn", "float8_e5m2"]
    optimizer: str
    caching_batch_size: int = Field(ge=1)
    joycaption_batch: int = Field(ge=1)

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum

    @model_validator(mode="after")
    def _batch_is_eight(self) -> TrainingProfile:
        if self.effective_batch != EFFECTIVE_BATCH:
            raise ValueError(
                f"micro_batch × grad_accum = {self.effective_batch}, every tier must give {EFFECTIVE_BATCH}"
            )
        return self


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    repo_id: str
    revision: str = "main"
    path: str
    dest: str  # relative to the pod workspace


class BaseModelManifest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    title: str
    diffusion_pipe_type: str | None = None
    ckpt_dir: str | None = None  # DiffusionPipe [model].ckpt_path, relative to the workspace
    min_system_ram_gb: int | None = None
    hf_snapshot: bool = False
    files: tuple[ModelFile, ...] = ()


@dataclass(frozen=True)
class RepoPin:
    """Where to clone a repo from and the commit to check out (an override of data/sources.toml)."""

    url: str
    commit: str


class RepoSource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    url: str
    commit: str
    submodules: bool = False
    dest: str  # relative to the pod workspace
    roles: tuple[str, ...] = ("train",)  # which pods bootstrap clones it on (`up --role`): train, comfyui


@dataclass(frozen=True)
class WheelPin:
    """Where to download a pinned wheel from and its sha256 (an override of data/sources.toml)."""

    url: str
    sha256: str


class WheelSource(BaseModel):
    """A prebuilt wheel the pod image lacks and a repo needs, installed by URL with pip's hash check."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: str
    url: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    import_name: str  # what must import afterwards
    roles: tuple[str, ...] = ("train",)


class ImageSource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str


class Sources(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    repos: dict[str, RepoSource]
    image: ImageSource
    wheels: dict[str, WheelSource] = {}

    def wheels_for_role(self, role: str) -> dict[str, WheelSource]:
        return {name: wheel for name, wheel in self.wheels.items() if role in wheel.roles}

    def for_role(self, role: str) -> dict[str, RepoSource]:
        """The repos a pod of this role needs (training pods: DiffusionPipe, JoyCaption; ComfyUI pods: ComfyUI)."""
        return {name: repo for name, repo in self.repos.items() if role in repo.roles}


def _load(name: str) -> dict:
    path: Path = data_dir() / name
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _data_error(name: str, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return ConfigError(f"package data {name} is invalid at {loc}: {first['msg']}", "reinstall pistachio-infra")


@functools.cache
def gpu_classes() -> dict[str, GpuClass]:
    raw = _load("gpus.toml")["classes"]
    try:
        return {name: GpuClass(name=name, **fields) for name, fields in raw.items()}
    except ValidationError as exc:
        raise _data_error("gpus.toml", exc) from exc


@functools.cache
def _profiles() -> dict[int, TrainingProfile]:
    raw = _load("profiles.toml")["tiers"]
    try:
        return {int(tier): TrainingProfile(tier=int(tier), **fields) for tier, fields in raw.items()}
    except ValidationError as exc:
        raise _data_error("profiles.toml", exc) from exc


@functools.cache
def _models() -> dict[str, BaseModelManifest]:
    raw = _load("models.toml")["models"]
    try:
        return {name: BaseModelManifest(name=name, **fields) for name, fields in raw.items()}
    except ValidationError as exc:
        raise _data_error("models.toml", exc) from exc


@functools.cache
def sources() -> Sources:
    try:
        return Sources.model_validate(_load("sources.toml"))
    except ValidationError as exc:
        raise _data_error("sources.toml", exc) from exc


def clear_cache() -> None:
    for fn in (gpu_classes, _profiles, _models, sources):
        fn.cache_clear()


def class_names() -> list[str]:
    return list(gpu_classes())


def gpu_class(name: str) -> GpuClass:
    """The class called `name` (case-insensitive); a ConfigError listing the valid classes otherwise."""
    key = str(name).strip().lower()
    classes = gpu_classes()
    if key in classes:
        return classes[key]
    raise ConfigError(f"unknown GPU class {name!r}", f"use one of: {', '.join(classes)}")


def class_for_gpu_type_id(gpu_type_id: str) -> GpuClass | None:
    """The class a RunPod GPU type id belongs to (the id we ask for, or an equivalent one), else None."""
    for cls in gpu_classes().values():
        if gpu_type_id in cls.gpu_type_ids:
            return cls
    return None


def profiles() -> dict[int, TrainingProfile]:
    return dict(_profiles())


def profile_for(gpu: GpuClass | str) -> TrainingProfile:
    cls = gpu if isinstance(gpu, GpuClass) else gpu_class(gpu)
    try:
        return _profiles()[cls.tier]
    except KeyError:
        raise ConfigError(
            f"GPU class {cls.name!r} names tier {cls.tier}, which has no training profile",
            f"add [tiers.{cls.tier}] to profiles.toml",
        ) from None


def base_models() -> dict[str, BaseModelManifest]:
    return dict(_models())


def base_model(name: str) -> BaseModelManifest:
    models = _models()
    if name in models:
        return models[name]
    trainable = [n for n, m in models.items() if m.diffusion_pipe_type]
    raise ConfigError(f"unknown base model {name!r}", f"use one of: {', '.join(trainable)}")
