"""Durable results on the Hugging Face Hub: one private model repo per LoRA (`<namespace>/<job>-lora`) holding the
chosen adapter, its adapter_config.json, the loss data and plot, the captions, the rendered configs, the report
and a model card (README.md) — where ComfyUI users already look for LoRAs, and outliving the pod.

The token: the narrowest that works is a fine-grained token with write access to the one namespace (user or org)
the repos go to ("Repositories: write" on it); a classic write token works too. It is read from HF_TOKEN (the
environment or the credentials file) and handed to huggingface_hub in memory only: never written to a file, a
log, the card or the report (`check_no_secret` refuses a bundle holding it).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PistachioError
from .results import PublishDone

if TYPE_CHECKING:
    from .context import RunContext
    from .results import SelectDone

LORA_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
BASE_MODEL = "Wan-AI/Wan2.1-T2V-14B"


class PublishError(PistachioError):
    pass


@dataclass(frozen=True)
class CardFacts:
    """What the model card says about one trained LoRA."""

    job: str
    character: str
    trigger: str
    base_model: str
    step: int
    checkpoint: str
    verdict: str  # selection.choose: converged / not_converged / …
    why: str  # selection message: why this checkpoint
    eval_loss: float | None
    settings: tuple[tuple[str, str], ...]  # (name, value) of the training settings shown
    loss_plot: str | None = "loss.png"
    samples: tuple[tuple[str, str, str], ...] = ()  # (prompt, without-LoRA file, with-LoRA file), repo paths
    sheet: str | None = None  # the contact sheet PNG, repo path


def repo_id_for(namespace: str, job: str) -> str:
    return f"{namespace}/{job}-lora"


def model_card(facts: CardFacts) -> str:
    """README.md: YAML front matter (huggingface_hub's ModelCardData) + what was trained and which step was kept."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=facts.base_model, instance_prompt=facts.trigger, license="apache-2.0",
        tags=["lora", "wan2.1", "text-to-video", "diffusion-pipe", "pistachio-infra", facts.character.lower()],
        pipeline_tag="text-to-video",
        # the Hub's gallery: each sample rendered with the LoRA, under its prompt
        widget=[{"text": prompt, "output": {"url": with_lora}} for prompt, _, with_lora in facts.samples] or None,
    )
    loss = f"{facts.eval_loss:.4f}" if facts.eval_loss is not None else "n/a"
    rows = "\n".join(f"| {k} | {v} |" for k, v in facts.settings)
    plot = f"\n![eval loss]({facts.loss_plot})\n" if facts.loss_plot else ""
    body = f"""
# {facts.character} — LoRA for {facts.base_model}

Trigger word: **`{facts.trigger}`** (put it in the prompt). Trained with DiffusionPipe by pistachio-infra
(job `{facts.job}`).

## Checkpoint

`{LORA_FILE}` is the checkpoint of step {facts.step} (`{facts.checkpoint}`, eval loss {loss}, {facts.verdict}):
{facts.why}
{plot}
{_samples_section(facts)}## Training settings

| setting | value |
|---|---|
{rows}

## Files

- `{LORA_FILE}`, `{CONFIG_FILE}`: the adapter (load it in ComfyUI from `models/loras/`)
- `loss.png`, `loss.csv` (when present): the eval loss per saved step
- `captions/`, `configs/`, `report.md`: what it was trained on and how
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _samples_section(facts: CardFacts) -> str:
    if not facts.samples:
        return ""
    rows = "\n".join(f"| {prompt.replace('|', '/')} | ![without]({without}) | ![with]({with_lora}) |"
                     for prompt, without, with_lora in facts.samples)
    sheet = f"\nAll of them on one sheet: [{facts.sheet}]({facts.sheet})\n" if facts.sheet else ""
    return f"""## Samples

Rendered in ComfyUI (core nodes) with the trigger word; each prompt with the LoRA and, same seed, without it.

| prompt | without the LoRA | with the LoRA |
|---|---|---|
{rows}
{sheet}
"""


def check_no_secret(folder: Path, secrets: list[str]) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                if secret and secret.encode() in data:
                    path.unlink()
                    raise PublishError(f"{path.name} holds a credential; it was not published",
                                       "report this: nothing that holds a token may be published")


def publish(folder: Path, repo_id: str, *, token: str, endpoint: str | None = None,
            message: str = "LoRA published by pistachio-infra") -> str:
    """Create the private repo (or keep it) and commit the folder to it; returns the commit id."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_no_secret(folder, [token])
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=True, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=message)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise PublishError(f"the Hugging Face Hub refused to write {repo_id} (HTTP {status})",
                               "give HF_TOKEN write access to that namespace (a fine-grained token with "
                               "'Repositories: write' on it)") from None
        raise PublishError(f"publishing {repo_id} failed: {exc}", "rerun; the upload is idempotent") from None
    return info.oid


def pull(repo_id: str, dest: Path, *, token: str | None, endpoint: str | None = None) -> Path:
    """Download a published LoRA's repo into `dest`; returns the adapter's path there."""
    import sys
    import warnings

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from tqdm import TqdmExperimentalWarning
    from tqdm.rich import tqdm as rich_tqdm

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()  # no raw per-file tqdm bars: one rich bar for the repo, on a terminal only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TqdmExperimentalWarning)
            folder = snapshot_download(repo_id, token=token, endpoint=endpoint, local_dir=str(dest),
                                       tqdm_class=rich_tqdm if sys.stderr.isatty() else None)
    except (RepositoryNotFoundError, HfHubHTTPError) as exc:
        raise PublishError(f"{repo_id} is not readable on the Hugging Face Hub ({type(exc).__name__})",
                           "check the job name and that HF_TOKEN can read the repo") from None
    finally:
        if not was_disabled:
            enable_progress_bars()
    lora = Path(folder) / LORA_FILE
    if not lora.is_file():
        raise PublishError(f"{repo_id} holds no {LORA_FILE}", "the run did not finish publishing; rerun `train`")
    return lora


def destination(ctx: RunContext) -> str | None:
    """The job's HF repo id, or None when the project names no hf_namespace."""
    namespace = ctx.project.project.hf_namespace if ctx.project is not None else None
    return repo_id_for(namespace, ctx.job.name) if namespace else None


def publish_run(ctx: RunContext) -> PublishDone:
    """The `publish` stage: the chosen adapter, its config, the report folder and the card to the job's repo."""
    from ..credentials import get_secret
    from .results import HarvestDone, SelectDone

    repo_id = destination(ctx)
    if repo_id is None:
        return PublishDone()
    chosen, harvested = ctx.stages.get(SelectDone), ctx.stages.get(HarvestDone)
    assert chosen is not None and harvested is not None, "publish follows select and harvest"
    token = get_secret("HF_TOKEN", required=True)
    assert token is not None
    job = ctx.job
    lora = Path(harvested.path)
    config = lora.with_name(f"{lora.stem}.adapter_config.json")
    staging = ctx.work_dir / "publish"
    shutil.rmtree(staging, ignore_errors=True)
    card = model_card(card_facts(ctx, chosen))
    folder = bundle(staging, lora=lora, adapter_config=config, report_folder=ctx.run_folder, card=card)
    commit = publish(folder, repo_id, token=token, endpoint=ctx.cloud.hf_endpoint,
                     message=f"{job.name}: step {chosen.step} ({chosen.verdict})")
    shutil.rmtree(staging, ignore_errors=True)
    ctx.say(f"[green]published[/green] {repo_id} (private, commit {commit[:10]})")
    return PublishDone(repo=repo_id, commit=commit)


def card_facts(ctx: RunContext, chosen: SelectDone) -> CardFacts:
    """What the model card says, from the run as the client knows it (samples and loss plot when they exist)."""
    job = ctx.job
    return CardFacts(
        job=job.name, character=job.character, trigger=job.trigger, base_model=BASE_MODEL, step=chosen.step,
        checkpoint=chosen.checkpoint, verdict=chosen.verdict, why=chosen.message, eval_loss=chosen.eval_loss,
        settings=tuple((k, str(v)) for k, v in (
            ("rank", job.rank), ("learning rate", job.lr), ("epochs", job.epochs), ("max steps", job.max_steps),
            ("resolutions", job.resolutions), ("checkpoints saved", job.checkpoints),
            ("GPU", ctx.gpu_class), ("seed", job.seed), ("eval split", job.eval_split),
        ) if v is not None),
        loss_plot="loss.png" if (ctx.run_folder / "loss.png").is_file() else None,
        **_card_samples(ctx),
    )


def _card_samples(ctx: RunContext) -> dict[str, object]:
    """The verify stage's samples as repo paths (the run folder, samples/ included, is the bundle)."""
    from .results import VerifyDone

    done = ctx.stages.get(VerifyDone)
    if done is None or not done.samples:
        return {}
    rows = tuple((s["prompt"], f"samples/{s['without']}", f"samples/{s['with_lora']}") for s in done.samples)
    sheet = "samples.png" if (ctx.run_folder / "samples.png").is_file() else None
    return {"samples": rows, "sheet": sheet}


def bundle(dest: Path, *, lora: Path, adapter_config: Path | None, report_folder: Path | None, card: str) -> Path:
    """The folder that is published: adapter + config under their PEFT names, the report's files, README.md."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lora, dest / LORA_FILE)
    if adapter_config is not None and adapter_config.is_file():
        shutil.copyfile(adapter_config, dest / CONFIG_FILE)
    if report_folder is not None and report_folder.is_dir():
        for item in report_folder.iterdir():
            if item.name in ("lora", LORA_FILE, "README.md"):
                continue
            target = dest / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(item, target)
    (dest / "README.md").write_text(card)
    return dest
