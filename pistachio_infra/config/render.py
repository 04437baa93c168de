"""Render a job's DiffusionPipe and JoyCaption files for one GPU class, and check them against DiffusionPipe's rules.

Templates live in the top-level templates/ folder (jinja2, StrictUndefined). Every path comes from the pod
workspace layout. Every rendered TOML is parsed back and checked (`check_diffusion_pipe_config`,
`check_dataset_config`); a violation is a bug in our templates or in a user's `overrides`, and raises.
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..catalog import GpuClass, base_model, gpu_class, profile_for
from ..dataset.buckets import BucketPlan, BucketSettings, global_batch
from ..errors import ConfigError
from ..paths import templates_dir
from ..pods.layout import (
    DATASET_TOML,
    EVAL_DATASET_TOML,
    EVAL_NAME,
    JOYCAPTION_TOML,
    TRAIN_TOML,
    WorkspaceLayout,
)
from .plan import TrainImages, choose_plan, train_sizes
from .project import Job

EPOCHS_WHEN_ONLY_STEPS = 10_000  # DiffusionPipe requires `epochs`; max_steps stops the run first

# DiffusionPipe utils/common.py DTYPE_MAP
DTYPES = frozenset({"float32", "float16", "bfloat16", "float8", "float8_e4m3fn", "float8_e5m2"})
# train.py's built-in optimizer names, matched case-insensitively
BUILTIN_OPTIMIZERS = frozenset(
    {"adamw", "adamw8bit", "adamw_optimi", "stableadamw", "sgd", "adamw8bitkahan", "offload", "automagic",
     "genericoptim"}
)
# Other names are looked up case-sensitively in pytorch_optimizer; these are the ones we accept from users.
PYTORCH_OPTIMIZER_CLASSES = frozenset({"Prodigy", "Lion", "CAME", "Adan", "ScheduleFreeAdamW"})
ADAPTER_TYPES = frozenset({"lora", "lokr"})
MAX_BLOCKS_TO_SWAP = {"14B": 38, "1.3B": 28}  # num_blocks - 2 (40 and 30 blocks)
UNREAD_KEYS = {  # keys users write that DiffusionPipe never reads (issues #346, stale examples)
    "save_eval_images": "DiffusionPipe computes eval loss only and writes no sample images",
    "pseudo_huber_c": "replaced by huber_delta; nothing reads it",
    "alpha": "DiffusionPipe always sets alpha = rank (and stops with NotImplementedError on [adapter].alpha)",
}


class ConfigRuleError(ConfigError):
    """A rendered DiffusionPipe file breaks one of DiffusionPipe's rules."""


@dataclass(frozen=True)
class Cadence:
    every: int  # eval_every_n_steps == save_every_n_steps
    estimated_steps: int
    warmup_steps: int
    basis: str  # how the estimate was made, written into the TOML as a comment


@dataclass(frozen=True)
class RenderedConfigs:
    files: dict[str, str]  # file name -> text, to be written into the job's config dir on the pod
    joycaption: dict[str, Any]  # the parsed joycaption.toml settings
    joycaption_argv: list[str]
    joycaption_env: dict[str, str]
    train_argv: list[str]  # run in `train_cwd`
    train_cwd: str
    train_env: dict[str, str] = field(default_factory=dict)
    cadence: Cadence | None = None
    gpu_class: str = ""
    eval_name: str = EVAL_NAME
    plan: BucketPlan | None = None  # DiffusionPipe's size buckets for the train images (None: not counted)


# --- jinja --------------------------------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """A Python value as a TOML literal (strings escaped properly)."""
    import tomlkit

    if isinstance(value, PurePosixPath | Path):
        value = str(value)
    return tomlkit.item(value).as_string()


@functools.cache
def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["toml"] = toml_value
    return env


def render_template(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)


# --- rendering ----------------------------------------------------------------------------------------------------

def _dataset_toml(job: Job, role: str, directory: PurePosixPath | str, num_repeats: int) -> str:
    notes = {"training": "the train side of the split",
             "eval": "the held-out side of the split; its loss picks the checkpoint"}
    return render_template("diffusion_pipe_dataset.toml.j2", job=job, role=role, directory=directory,
                           role_note=notes[role], num_repeats=num_repeats)


def plan_job(job: Job, batch: int, train_images: TrainImages | None = None, gpu: str = "any GPU") -> BucketPlan:
    """DiffusionPipe's size buckets for the job's train images at global batch `batch`, from the dataset TOML we
    render (so a change to the template changes the plan); refuses a plan that would never train some images."""
    sizes = train_sizes(job, train_images)
    directory = WorkspaceLayout().job(job.name).train_dir

    def settings_for(repeats: int) -> BucketSettings:
        return BucketSettings.from_dataset_config(tomllib.loads(_dataset_toml(job, "training", directory, repeats)))

    return choose_plan(job, sizes, batch, gpu, settings_for)


def cadence_for(job: Job, effective_batch: int, train_images: TrainImages | None = None,
                plan: BucketPlan | None = None) -> Cadence:
    """Steps between saves (= evals): about `job.checkpoints` LoRAs over the run. Steps per epoch come from the
    bucket plan (DiffusionPipe's count), made here from `train_images` unless given."""
    needs_epochs = job.epochs is not None and (job.max_steps is None or job.save_every_n_steps is None)
    if plan is None and (needs_epochs or train_images is not None):
        plan = plan_job(job, effective_batch, train_images)
    if job.epochs is not None and plan is not None:
        steps_per_epoch = plan.steps_per_epoch
        total = job.epochs * steps_per_epoch
        basis = f"{job.epochs} epochs × {steps_per_epoch} steps: {plan.describe()}"
        if job.max_steps is not None and job.max_steps < total:
            total, basis = job.max_steps, f"max_steps {job.max_steps}"
    elif job.max_steps is not None:
        total, basis = job.max_steps, f"max_steps {job.max_steps}"
    else:  # epochs with an explicit cadence and no image count
        total, basis = job.save_every_n_steps * job.checkpoints, "explicit save_every_n_steps"
    every = job.save_every_n_steps or max(1, math.ceil(total / job.checkpoints))
    return Cadence(every=every, estimated_steps=total, warmup_steps=min(10, total // 10), basis=basis)


def joycaption_argv(
    settings: dict[str, Any], python: str = "python3", filelist: str | PurePosixPath | None = None
) -> list[str]:
    """The batch-alpha2.py command line for these settings. With `filelist`, only the listed images are captioned
    (the script cannot be told to keep existing captions: its --overwrite is always on)."""
    argv = [python, str(settings["script"])]
    if filelist is not None:
        argv += ["--filelist", str(filelist)]
    argv += [
        "--input-dir", str(settings["input_dir"]),
        "--output-dir", str(settings["output_dir"]),
        "--model", str(settings["model"]),
        "--prompt", str(settings["prompt"]),
        "--prepend-string", str(settings["prepend_string"]),
        "--batch-processing-count", str(settings["batch_processing_count"]),
        "--max-new-tokens", str(settings["max_new_tokens"]),
        "--temperature", str(settings["temperature"]),
    ]
    return argv


def _apply_overrides(text: str, overrides: dict[str, Any]) -> str:
    if not overrides:
        return text
    import tomlkit

    doc = tomlkit.parse(text)

    def merge(target: Any, patch: dict[str, Any]) -> None:
        for key, value in patch.items():
            if isinstance(value, dict) and key in target and isinstance(target[key], dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(doc, overrides)
    return tomlkit.dumps(doc)


def render_job(
    job: Job,
    gpu: GpuClass | str,
    layout: WorkspaceLayout | None = None,
    *,
    train_images: int | None = None,
    run_label: str | None = None,
) -> RenderedConfigs:
    """Every file a job needs on a pod of class `gpu`. `train_images` (the train side of the split) sizes the
    save/eval cadence; without it the job's dataset folder is counted. `run_label` (the run's stamp) goes into the
    wandb run name, so each run of a job is its own wandb run."""
    cls = gpu if isinstance(gpu, GpuClass) else gpu_class(gpu)
    layout = layout or WorkspaceLayout()
    profile = profile_for(cls)
    manifest = base_model(job.base_model)
    job_layout = layout.job(job.name)
    common = {"job": job, "gpu": cls, "profile": profile, "layout": job_layout, "layout_ws": layout}
    batch = profile.effective_batch  # micro × accumulation × 1 data-parallel rank (`--num_gpus=1`)
    plan = None
    for _ in range(2):  # a second pass when the job's overrides change the batch shape
        if train_images is not None or job.dataset.is_dir():
            plan = plan_job(job, batch, train_images, cls.name)
        cadence = cadence_for(job, batch, train_images, plan=plan)
        train = render_template(
            "diffusion_pipe_train.toml.j2",
            **common,
            manifest=manifest,
            ckpt_path=layout.model_ckpt_dir(job.base_model),
            cadence=cadence,
            epochs=job.epochs or EPOCHS_WHEN_ONLY_STEPS,
            eval_name=EVAL_NAME,
            checkpoint_minutes=job.checkpoint_minutes,
            wandb_run="-".join(filter(None, (job.wandb_run or job.name, run_label))) if job.wandb_enabled else "",
        )
        train = _apply_overrides(train, job.overrides)
        try:
            rendered_batch = global_batch(tomllib.loads(train))
        except (tomllib.TOMLDecodeError, TypeError, ValueError, IndexError):
            break  # check_diffusion_pipe_config names the problem below
        if rendered_batch == batch:
            break
        batch = rendered_batch
    repeats = plan.num_repeats if plan is not None else (job.num_repeats or 1)
    dataset = _dataset_toml(job, "training", job_layout.train_dir, repeats)
    eval_dataset = _dataset_toml(job, "eval", job_layout.eval_dir, 1)  # eval batch 1: nothing is cut
    joycaption = render_template("joycaption.toml.j2", **common)

    problems = [f"{TRAIN_TOML}: {p}" for p in check_diffusion_pipe_config(train)]
    problems += [f"{DATASET_TOML}: {p}" for p in check_dataset_config(dataset)]
    problems += [f"{EVAL_DATASET_TOML}: {p}" for p in check_dataset_config(eval_dataset)]
    settings = tomllib.loads(joycaption)
    if not str(settings.get("prepend_string", "")).endswith(", "):
        problems.append(f"{JOYCAPTION_TOML}: prepend_string must end with ', ' (the script adds no separator)")
    if problems:
        where = "the job's overrides" if job.overrides else "pistachio-infra's templates (a bug)"
        raise ConfigRuleError(
            f"rendered config for job {job.name!r} on {cls.name} breaks DiffusionPipe's rules: " + "; ".join(problems),
            f"fix {where}",
        )

    return RenderedConfigs(
        files={TRAIN_TOML: train, DATASET_TOML: dataset, EVAL_DATASET_TOML: eval_dataset, JOYCAPTION_TOML: joycaption},
        joycaption=settings,
        joycaption_argv=joycaption_argv(settings),
        joycaption_env={"HF_HOME": str(settings["hf_home"])},
        train_argv=["deepspeed", "--num_gpus=1", "train.py", "--deepspeed", "--config", str(job_layout.train_toml)],
        train_cwd=str(layout.diffusion_pipe),
        # README: needed on RTX 4000-series cards, harmless elsewhere (one GPU, no NCCL traffic)
        train_env={"NCCL_P2P_DISABLE": "1", "NCCL_IB_DISABLE": "1"},
        cadence=cadence,
        gpu_class=cls.name,
        plan=plan,
    )


def write_rendered(rendered: RenderedConfigs, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered.files.items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written


# --- rules --------------------------------------------------------------------------------------------------------

def _parse(text: str) -> tuple[dict | None, list[str]]:
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return None, [f"not valid TOML: {exc}"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_diffusion_pipe_config(text: str) -> list[str]:
    """Problems DiffusionPipe (8f83dbf) would fail on, or that would make eval-loss selection impossible."""
    cfg, problems = _parse(text)
    if cfg is None:
        return problems

    for key in ("output_dir", "dataset"):
        if not isinstance(cfg.get(key), str) or not cfg.get(key):
            problems.append(f"{key} is required (a path)")
    if not _is_int(cfg.get("epochs")) or cfg["epochs"] < 1:
        problems.append("epochs is required (a positive integer; max_steps may stop the run earlier)")
    saves = {u: cfg.get(f"save_every_n_{u}") for u in ("epochs", "steps", "examples")}
    if all(v is None for v in saves.values()):
        problems.append("one of save_every_n_epochs / save_every_n_steps / save_every_n_examples is required")
    for unit, value in saves.items():
        if value is not None and (not _is_int(value) or value < 1):
            problems.append(f"save_every_n_{unit} must be a positive integer, not {value!r}")
    if "save_dtype" in cfg and cfg["save_dtype"] not in DTYPES:
        problems.append(f"save_dtype {cfg['save_dtype']!r} is not one of {', '.join(sorted(DTYPES))}")
    ac = cfg.get("activation_checkpointing", False)
    if ac not in (True, False, "unsloth"):
        problems.append(f"activation_checkpointing must be true, false or 'unsloth', not {ac!r}")
    for key, why in UNREAD_KEYS.items():
        if key in cfg:
            problems.append(f"{key} is not a DiffusionPipe key: {why}")

    problems += _check_model(cfg)
    problems += _check_adapter(cfg)
    problems += _check_optimizer(cfg)
    problems += _check_eval(cfg, saves)
    problems += _check_monitoring(cfg)
    return problems


def _check_model(cfg: dict) -> list[str]:
    model = cfg.get("model")
    if not isinstance(model, dict):
        return ["[model] table is required (type, ckpt_path, dtype)"]
    required = ("type", "ckpt_path", "dtype") if model.get("type") == "wan" else ("type", "dtype")
    problems = [f"[model].{k} is required" for k in required if not model.get(k)]
    for key in ("dtype", "transformer_dtype"):
        value = model.get(key)
        if value is None:
            continue
        if value == "nf4":
            problems.append(f"[model].{key} = 'nf4' is not valid for Wan (HiDream only); use 'float8' on 24 GB cards")
        elif value not in DTYPES:
            problems.append(f"[model].{key} {value!r} is not one of {', '.join(sorted(DTYPES))}")
    swap = cfg.get("blocks_to_swap", 0)
    if swap:
        if not _is_int(swap) or swap < 0:
            problems.append(f"blocks_to_swap must be a non-negative integer, not {swap!r}")
        else:
            size = "1.3B" if "1.3B" in str(model.get("ckpt_path", "")) else "14B"
            limit = MAX_BLOCKS_TO_SWAP[size]
            if model.get("type") == "wan" and swap > limit:
                problems.append(f"blocks_to_swap = {swap} exceeds {limit} (Wan {size}: num_blocks - 2)")
        if cfg.get("pipeline_stages", 1) != 1:
            problems.append("blocks_to_swap requires pipeline_stages = 1")
        if "adapter" not in cfg:
            problems.append("blocks_to_swap requires an [adapter] table")
    return problems


def _check_adapter(cfg: dict) -> list[str]:
    adapter = cfg.get("adapter")
    if adapter is None:
        return []  # a full fine-tune; not what we render, but valid
    if not isinstance(adapter, dict):
        return ["[adapter] must be a table"]
    problems = []
    if adapter.get("type") not in ADAPTER_TYPES:
        problems.append(f"[adapter].type {adapter.get('type')!r} is not one of lora, lokr")
    if not _is_int(adapter.get("rank")) or adapter["rank"] < 1:
        problems.append("[adapter].rank is required (a positive integer)")
    if "alpha" in adapter:
        problems.append("[adapter].alpha is forbidden: DiffusionPipe sets alpha = rank and stops on the key")
    if "dtype" in adapter and adapter["dtype"] not in DTYPES:
        problems.append(f"[adapter].dtype {adapter['dtype']!r} is not one of {', '.join(sorted(DTYPES))}")
    return problems


def _check_optimizer(cfg: dict) -> list[str]:
    opt = cfg.get("optimizer")
    if not isinstance(opt, dict) or "type" not in opt:
        return ["[optimizer] table with a type is required"]
    name = str(opt["type"])
    if name.lower() not in BUILTIN_OPTIMIZERS and name not in PYTORCH_OPTIMIZER_CLASSES:
        allowed = sorted(BUILTIN_OPTIMIZERS) + sorted(PYTORCH_OPTIMIZER_CLASSES)
        return [f"[optimizer].type {name!r} is not a known optimizer ({', '.join(allowed)})"]
    if "lr" not in opt:
        return ["[optimizer].lr is required"]
    return []


def _check_eval(cfg: dict, saves: dict[str, Any]) -> list[str]:
    datasets = cfg.get("eval_datasets", [])
    if not isinstance(datasets, list):
        return ["eval_datasets must be a list of tables {name, config}"]
    problems = []
    names = []
    for i, entry in enumerate(datasets):
        if not isinstance(entry, dict):
            problems.append(
                f"eval_datasets[{i}] is {entry!r}: use a table {{name = '...', config = '...'}} "
                "(the bare-string form crashes DiffusionPipe)"
            )
            continue
        if not entry.get("name") or not entry.get("config"):
            problems.append(f"eval_datasets[{i}] needs both name and config")
        names.append(entry.get("name"))
    if len(set(names)) != len(names):
        problems.append("eval_datasets names must be unique (they name the TensorBoard tags)")
    if not datasets:
        return problems
    evals = {u: cfg.get(f"eval_every_n_{u}") for u in ("epochs", "steps", "examples")}
    if all(v is None for v in evals.values()):
        problems.append("eval_datasets are set but no eval_every_n_steps/epochs/examples: eval would run only once")
    for unit, value in evals.items():
        if value is not None and value != saves.get(unit):
            problems.append(
                f"eval_every_n_{unit} = {value} but save_every_n_{unit} = {saves.get(unit)}: "
                "set them equal so every eval loss has a saved LoRA"
            )
    return problems


def _check_monitoring(cfg: dict) -> list[str]:
    mon = cfg.get("monitoring")
    if mon is None:
        return []
    problems = []
    if mon.get("wandb_api_key"):
        problems.append(
            "[monitoring].wandb_api_key must stay empty: DiffusionPipe copies this file into every LoRA folder; "
            "the key reaches it through WANDB_API_KEY"
        )
    if mon.get("enable_wandb"):
        missing = [k for k in ("wandb_api_key", "wandb_tracker_name", "wandb_run_name") if k not in mon]
        if missing:
            problems.append(f"enable_wandb needs {', '.join(missing)} present (DiffusionPipe reads them directly)")
        elif not mon.get("wandb_tracker_name"):
            problems.append("enable_wandb needs wandb_tracker_name (the wandb project)")
    return problems


def check_dataset_config(text: str) -> list[str]:
    cfg, problems = _parse(text)
    if cfg is None:
        return problems
    res = cfg.get("resolutions")
    if not isinstance(res, list) or not res:
        problems.append("resolutions is required (a list)")
    elif len(res) > 3:
        problems.append(f"{len(res)} resolutions: more than 3 aborts DiffusionPipe")
    if cfg.get("enable_ar_bucket") and "ar_buckets" not in cfg:
        problems += [f"{k} is required with enable_ar_bucket" for k in ("min_ar", "max_ar", "num_ar_buckets")
                     if k not in cfg]
    dirs = cfg.get("directory")
    if not isinstance(dirs, list) or not dirs:
        problems.append("at least one [[directory]] with a path is required")
    else:
        problems += [f"[[directory]] #{i + 1} has no path" for i, d in enumerate(dirs) if not d.get("path")]
    return problems
