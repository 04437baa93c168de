"""What users write: pistachio.toml ([project] + [jobs.<name>] tables) and standalone job files.

Relative paths are resolved against the folder of the file they are written in (passed to pydantic as
validation context `base_dir`). Every validation problem becomes one ConfigError line naming the file, the field,
the bad value and what is allowed.

Adding a section (e.g. `[campaign]`): declare a model and add one field to `Project`; errors, unknown-key
messages and path resolution work for it without further changes.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..dataset.scan import JOB_FILES
from ..errors import ConfigError

PROJECT_FILE = "pistachio.toml"
DEFAULT_BASE_MODEL = "wan21-t2v-14b"
DEFAULT_EPOCHS = 100
JOB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TRIGGER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,49}$")
DATA_CENTER_RE = re.compile(r"^[A-Z]{2,4}-[A-Z]{2,4}-\d+$")
# Training-TOML keys whose values come from the pod layout, never from a user override.
MANAGED_KEYS = ("output_dir", "dataset", "eval_datasets")


def _resolve(value: Path | str, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path.resolve() if path.is_absolute() else path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ProjectSettings(_Strict):
    name: str = Field(min_length=1, max_length=80)
    state_dir: Path | None = None  # default: the platform's user state dir (PISTACHIO_HOME overrides both)
    comfyui_loras_dir: str | None = None  # local folder, or a remote location (URL form) left to the installer
    # a running ComfyUI (local or the team's) that renders the `verify` samples; its models/loras is comfyui_loras_dir
    comfyui_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # durable results: each job's LoRA, card and report go to the private HF repo <hf_namespace>/<job>-lora
    hf_namespace: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("comfyui_loras_dir")
    @classmethod
    def _loras_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "://" in value:
            return value
        return str(_resolve(value, info))


Resolution = Annotated[int, Field(ge=256, le=1536, multiple_of=16)]


class Job(_Strict):
    name: str
    character: str = Field(min_length=1, max_length=80)
    trigger: str
    dataset: Path
    base_model: str = DEFAULT_BASE_MODEL
    gpu: list[str] = Field(default_factory=lambda: ["auto"])  # "auto", a class, or classes in fallback order
    data_centers: list[str] = Field(default_factory=list)  # ordered preference; empty = anywhere
    epochs: int | None = Field(default=None, ge=1, le=100_000)
    max_steps: int | None = Field(default=None, ge=1, le=1_000_000)
    rank: int = Field(default=32, ge=1, le=256)
    lr: float = Field(default=5e-5, gt=0, le=1e-2)
    resolutions: list[Resolution] = Field(default_factory=lambda: [512], min_length=1, max_length=3)
    eval_split: float = Field(default=0.2, gt=0, le=0.5)
    # DiffusionPipe's num_repeats for the train images; unset: the least (up to 4) with which no aspect-ratio
    # bucket falls short of the global batch (DiffusionPipe drops such a bucket whole)
    num_repeats: int | None = Field(default=None, ge=1, le=100)
    seed: int = Field(default=42, ge=0)
    checkpoints: int = Field(default=16, ge=2, le=200)  # LoRAs saved (and evaluated) over the run
    save_every_n_steps: int | None = Field(default=None, ge=1)  # overrides the cadence derived from `checkpoints`
    # DiffusionPipe's training-state checkpoint (checkpoint_every_n_minutes): a killed, preempted or lost run
    # resumes from it (--resume_from_checkpoint) and loses at most this many minutes of training
    checkpoint_minutes: float = Field(default=10, gt=0, le=1440)
    wandb_project: str | None = None
    wandb_run: str | None = None
    budget_usd: float | None = Field(default=None, gt=0)
    interruptible: bool = False
    recaption: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)  # extra DiffusionPipe training-TOML keys/tables
    # the `verify` stage: prompts rendered with and without the LoRA (default: 4 drawn from the captions); each gets
    # the trigger word when it lacks it. sample_clip adds one short clip (33 frames) of the first prompt.
    sample_prompts: list[str] | None = Field(default=None, min_length=1, max_length=16)
    sample_clip: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME_RE.match(value):
            raise ValueError("job names use lowercase letters, digits, '-' and '_' (up to 63 characters)")
        return value

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, value: str) -> str:
        if not TRIGGER_RE.match(value):
            raise ValueError("a trigger word is one token of 2-50 letters, digits, '-' or '_' (e.g. 'zxq7')")
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("base_model")
    @classmethod
    def _base_model(cls, value: str) -> str:
        from ..catalog import base_models

        trainable = [name for name, m in base_models().items() if m.diffusion_pipe_type]
        if value not in trainable:
            raise ValueError(f"unknown base model; allowed: {', '.join(trainable)}")
        return value

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_list(cls, value: Any) -> Any:
        # `gpu = 4090` (a TOML integer) means the class "4090"
        items = value if isinstance(value, list) else [value]
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: list[str]) -> list[str]:
        from ..catalog import class_names

        names = [v.lower() for v in value]
        valid = class_names()
        if not names:
            raise ValueError(f"give 'auto', a GPU class or a list of classes; classes: {', '.join(valid)}")
        unknown = [n for n in names if n not in valid and n != "auto"]  # "auto" in a list: then the auto classes
        if unknown:
            raise ValueError(f"unknown GPU class {unknown[0]!r}; allowed: auto, {', '.join(valid)}")
        if len(set(names)) != len(names):
            raise ValueError("a GPU class is listed twice")
        return names

    @field_validator("data_centers")
    @classmethod
    def _data_centers(cls, value: list[str]) -> list[str]:
        for dc in value:
            if not DATA_CENTER_RE.match(dc):
                raise ValueError(f"{dc!r} is not a RunPod data center id (like 'US-KS-2' or 'EU-RO-1')")
        return value

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = [k for k in MANAGED_KEYS if k in value]
        if managed:
            raise ValueError(f"{managed[0]!r} is set by pistachio-infra from the pod layout and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _length(self) -> Job:
        if self.epochs is None and self.max_steps is None:
            self.epochs = DEFAULT_EPOCHS
        return self

    @property
    def gpu_auto(self) -> bool:
        return self.gpu == ["auto"]

    @property
    def wandb_enabled(self) -> bool:
        return bool(self.wandb_project)


class CampaignSettings(_Strict):
    """[campaign]: many jobs under one hard budget (campaign/ plans and runs them)."""

    name: str
    budget_usd: float = Field(gt=0, le=100_000)
    deadline_hours: float | None = Field(default=None, gt=0, le=24 * 30)  # wall time for the whole campaign
    gpu: list[str] = Field(default_factory=lambda: ["auto"])  # classes the planner may choose from; auto = all
    data_centers: list[str] = Field(default_factory=list)  # allowed data centers; empty = any
    max_concurrent: int = Field(default=2, ge=1, le=32)  # pods at once
    interruptible: bool = False  # spot pods allowed (cheaper, may be preempted; priced as on-demand to be safe)
    retries: int = Field(default=1, ge=0, le=5)  # a failed job is run again this many times, then skipped
    jobs: list[str] | None = None  # which [jobs.*] belong to the campaign; default: all of them
    volume: bool | None = None  # use the env stack's network volume (warm model cache); None: when deployed
    sample_datasets: bool = False  # fill a missing dataset folder with generated sample images (demo/sandbox)
    # where relative paths (datasets, comfyui_loras_dir) and runs/ live; relative to the file. Default: the file's
    # folder, or for a sample_datasets (demo) campaign the state dir's campaigns/<name>/ — never beside a shipped
    # example (campaign/spec.py)
    work_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _campaign_name(cls, value: str) -> str:
        if not JOB_NAME_RE.match(value):
            raise ValueError("a campaign name uses lowercase letters, digits, '-' and '_' (up to 63 characters)")
        return value

    _gpu = field_validator("gpu", mode="before")(Job._gpu_list.__func__)  # type: ignore[attr-defined]
    _gpu_names = field_validator("gpu")(Job._gpu.__func__)  # type: ignore[attr-defined]
    _dcs = field_validator("data_centers")(Job._data_centers.__func__)  # type: ignore[attr-defined]


class Project(_Strict):
    project: ProjectSettings
    jobs: dict[str, Job] = Field(default_factory=dict)
    campaign: CampaignSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_jobs(cls, data: Any) -> Any:
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if isinstance(jobs, dict):
            data = {**data, "jobs": {k: ({"name": k, **v} if isinstance(v, dict) else v) for k, v in jobs.items()}}
        return data

    def job(self, name: str) -> Job:
        if name in self.jobs:
            return self.jobs[name]
        known = ", ".join(self.jobs) or "none defined"
        raise ConfigError(f"no job named {name!r} in {PROJECT_FILE} (jobs: {known})", f"add [jobs.{name}]")


# --- errors -------------------------------------------------------------------------------------------------------

def _field_annotation(model: Any, loc: tuple) -> Any:
    """The annotation at `loc` inside `model`, following models, dicts and lists (for 'allowed keys' hints)."""
    current = model
    for part in loc:
        origin = typing.get_origin(current)
        if origin in (Union, types.UnionType):
            current = next((a for a in typing.get_args(current) if a is not type(None)), current)
            origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif origin is dict:
            current = typing.get_args(current)[1]
        elif origin is list:
            current = typing.get_args(current)[0]
        else:
            return None
    return current


def _describe(error: dict, root_model: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{where} is missing (required)"
    if kind == "extra_forbidden":
        parent = _field_annotation(root_model, loc[:-1])
        allowed = ", ".join(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else ""
        return f"{where}: unknown key" + (f"; allowed keys: {allowed}" if allowed else "")
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{…}"
    return f"{where} = {shown}: {msg}"


def config_error(exc: ValidationError, source: Path | str, root_model: type[BaseModel]) -> ConfigError:
    errors = exc.errors()
    parts = [_describe(e, root_model) for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return ConfigError(f"{source}: " + "; ".join(parts) + more, f"fix {Path(source).name} and run again")


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found", "run `pistachio-infra init` to write one") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", f"fix the syntax in {path.name}") from None


def _validate(model: type[BaseModel], data: dict, path: Path, base_dir: Path | None = None) -> Any:
    """`base_dir`: where relative paths in the file point (default: the file's folder)."""
    try:
        return model.model_validate(data, context={"base_dir": (base_dir or path.parent).resolve()})
    except ValidationError as exc:
        raise config_error(exc, path, model) from None


# --- loading ------------------------------------------------------------------------------------------------------

def load_project(path: str | Path | None = None) -> Project:
    """Read and validate pistachio.toml (default: the one in the current folder)."""
    path = Path(path or PROJECT_FILE)
    if path.is_dir():
        path = path / PROJECT_FILE
    return _validate(Project, _read_toml(path), path)


def locate_project_file(start: str | Path | None = None) -> Path | None:
    """pistachio.toml in `start` (default: the working folder) or the nearest parent folder, like Pulumi.yaml."""
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate / PROJECT_FILE
    return None


def find_project(path: str | Path | None = None) -> Project | None:
    """The project at `path` (must exist), else the nearest pistachio.toml here or above, else None."""
    if path is not None:
        return load_project(path)
    found = locate_project_file()
    return load_project(found) if found is not None else None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return slug[:63] or "job"


def load_job_file(path: str | Path) -> Job:
    """A standalone job TOML: the keys of a [jobs.<name>] table at top level. `dataset` defaults to its folder,
    `name` to the file's stem (or the folder's name for job.toml)."""
    path = Path(path)
    data = _read_toml(path)
    default_name = path.parent.resolve().name if path.name in JOB_FILES else path.stem
    data = {"name": _slug(default_name), "dataset": ".", **data}
    return _validate(Job, data, path)


def resolve_job(project: Project | None, name_or_path: str | Path) -> Job:
    """A job by name in the project, or by path: a job TOML, or a dataset folder (matched against the project's
    jobs, else a job.toml inside it)."""
    text = str(name_or_path)
    if project is not None and text in project.jobs:
        return project.jobs[text]
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".toml":
        return load_job_file(path)
    if path.is_dir():
        target = path.resolve()
        if project is not None:
            for job in project.jobs.values():
                if job.dataset == target:
                    return job
        for name in JOB_FILES:
            if (path / name).is_file():
                return load_job_file(path / name)
        raise ConfigError(
            f"{path} is a folder with no job.toml and no job in {PROJECT_FILE} uses it",
            f"add a [jobs.NAME] table with dataset = '{path}' to {PROJECT_FILE}, or a job.toml with "
            "character and trigger inside the folder",
        )
    known = ", ".join(project.jobs) if project is not None and project.jobs else "none"
    raise ConfigError(
        f"{text!r} is neither a job in {PROJECT_FILE} (jobs: {known}) nor a job file or dataset folder",
        "give a job name, a job TOML or a dataset folder",
    )

