"""Where the samples render, decided before anything is rented, and what that adds to the run's estimate.

Options, cheapest first:
  comfyui   a ComfyUI that already runs (project.comfyui_url: the local or the team's) and already has ComfyUI's Wan 2.1
            files: adds no rent, only its render time. The LoRA reaches it through comfyui_loras_dir (install).
  pod       a fresh ComfyUI pod (`up --role comfyui`): its rent for start + downloading ~21 GB of Wan 2.1 files +
            rendering. Chosen only when asked (`train --verify-on-pod`) and nothing is ready; otherwise the plan
            quotes it, so nobody downloads tens of GB unasked.
  skipped   `--no-verify`, or nothing ready (the note says what the pod would cost and how to get a ready one).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from .graph import CORE_CLASSES, WanFiles

Band = tuple[float, float, float]


@dataclass(frozen=True)
class ModelFile:
    file: str
    path: str
    folder: str
    gb: float


@dataclass(frozen=True)
class VerifyModels:
    repo: str
    diffusion_model: ModelFile
    text_encoder: ModelFile
    vae: ModelFile

    @property
    def files(self) -> tuple[ModelFile, ...]:
        return (self.diffusion_model, self.text_encoder, self.vae)

    @property
    def gb(self) -> float:
        return sum(f.gb for f in self.files)


@dataclass(frozen=True)
class VerifyPlan:
    where: str  # "comfyui" | "pod" | "skipped"
    reason: str  # one line: why this option
    samples: int = 0
    clips: int = 0
    url: str | None = None
    files: WanFiles | None = None  # the names that ComfyUI lists (a manager install keeps them in sub-folders)
    seconds: Band = (0.0, 0.0, 0.0)
    usd: Band = (0.0, 0.0, 0.0)
    download_gb: float = 0.0

    @property
    def runs(self) -> bool:
        return self.where != "skipped"

    def line(self) -> str:
        from ..money import usd

        if not self.runs:
            return f"verify: skipped ({self.reason})"
        what = f"{self.samples} still(s)" + (f" + {self.clips} clip(s)" if self.clips else "")
        return (f"verify: {what} with and without the LoRA on {self.reason}; adds ~{self.seconds[1]:.0f}s "
                f"({self.seconds[0]:.0f}-{self.seconds[2]:.0f}s) and {usd(self.usd[1])} to the estimate")


@cache
def _data() -> dict[str, Any]:
    return tomllib.loads(resources.files("pistachio_infra.data").joinpath("verify.toml").read_text())


def models_for(base_model: str) -> VerifyModels | None:
    raw = _data()["models"].get(base_model)
    if raw is None:
        return None
    return VerifyModels(repo=raw["repo"], **{k: ModelFile(**raw[k]) for k in ("diffusion_model", "text_encoder",
                                                                                "vae")})


def _band(cloud: str, key: str, tier: int | None = None) -> Band:
    raw = _data()["timings"][cloud][key]
    if tier is not None:
        tiers = sorted(int(t) for t in raw)
        raw = raw[str(max([t for t in tiers if t <= tier] or tiers[:1]))]
    return tuple(float(v) for v in raw)  # type: ignore[return-value]


def render_seconds(cloud: str, tier: int, stills: int, clips: int) -> Band:
    load, still, clip = _band(cloud, "model_load_s"), _band(cloud, "s_per_still", tier), \
        _band(cloud, "s_per_clip", tier)
    # each prompt twice: with the LoRA and without it
    return tuple(load[i] + 2 * (stills * still[i] + clips * clip[i]) for i in range(3))  # type: ignore[return-value]


def pod_cost(cloud: str, tier: int, price_per_hr: float, models: VerifyModels, stills: int, clips: int
             ) -> tuple[Band, Band]:
    """(seconds, usd) of a fresh ComfyUI pod: start, download the Wan files, render."""
    start, rate = _band(cloud, "comfy_start_s"), _band(cloud, "download_mb_per_s")
    render = render_seconds(cloud, tier, stills, clips)
    seconds = tuple(start[i] + models.gb * 1000 / rate[2 - i] + render[i] for i in range(3))
    return seconds, tuple(s * price_per_hr / 3600 for s in seconds)  # type: ignore[return-value]


def ready_files(client: Any, models: VerifyModels) -> tuple[WanFiles | None, list[str]]:
    """The Wan files as that ComfyUI lists them (matched by file name, any sub-folder), or the missing ones; also
    missing core node classes (an old ComfyUI)."""
    info = client.object_info()
    missing = [c for c in CORE_CLASSES if c not in info]
    names: dict[str, str] = {}
    for key, f in (("diffusion_model", models.diffusion_model), ("text_encoder", models.text_encoder),
                   ("vae", models.vae)):
        listed = client.models(f.folder) + (client.models("unet") if f.folder == "diffusion_models" else [])
        match = next((n for n in listed if n.rsplit("/", 1)[-1] == f.file), None)
        if match is None:
            missing.append(f"{f.folder}/{f.file} ({f.gb:g} GB)")
        else:
            names[key] = match
    return (WanFiles(**names) if not missing else None), missing


def plan_verify(*, enabled: bool, base_model: str, comfyui_url: str | None, stills: int, clips: int,
                cloud_name: str, pod_tier: int, pod_price_per_hr: float | None, allow_pod: bool = False,
                pod_class: str = "") -> VerifyPlan:
    """Pick where the samples render. Asks the configured ComfyUI what it has (free, before renting)."""
    from ..money import usd
    from .client import ComfyClient, ComfyError

    if not enabled:
        return VerifyPlan("skipped", "--no-verify")
    models = models_for(base_model)
    if models is None:
        return VerifyPlan("skipped", f"no ComfyUI packaging of {base_model} is known")
    pod_quote, pod_plan = "", None
    if pod_price_per_hr:
        seconds, cost = pod_cost(cloud_name, pod_tier, pod_price_per_hr, models, stills, clips)
        pod_quote = (f"; a fresh ComfyUI pod would add ~{usd(cost[1])} and download {models.gb:.1f} GB "
                     f"({models.repo}): ask for it with --verify-on-pod")
        pod_plan = VerifyPlan("pod", f"a fresh ComfyUI pod ({pod_class or f'{pod_tier} GB'}; downloads "
                                     f"{models.gb:.1f} GB from {models.repo})", samples=stills, clips=clips,
                              files=WanFiles(models.diffusion_model.file, models.text_encoder.file, models.vae.file),
                              seconds=seconds, usd=cost, download_gb=models.gb)
    if allow_pod and pod_plan is not None:
        pod_quote = ""

    def fallback(why: str) -> VerifyPlan:
        if allow_pod and pod_plan is not None:
            return pod_plan
        return VerifyPlan("skipped", f"{why}{pod_quote}")

    if not comfyui_url:
        return fallback("no ComfyUI with Wan 2.1 is configured: set project.comfyui_url (and comfyui_loras_dir to "
                        "its models/loras)")
    try:
        with ComfyClient(comfyui_url, timeout=10) as client:
            files, missing = ready_files(client, models)
    except ComfyError as exc:
        return fallback(exc.cause)
    if files is None:
        return fallback(f"the ComfyUI at {comfyui_url} lacks {', '.join(missing)}: download them from {models.repo} "
                        "into its models folders")
    seconds = render_seconds(cloud_name, 48, stills, clips)
    return VerifyPlan("comfyui", f"the ComfyUI at {comfyui_url} (already running: no rent)", samples=stills,
                      clips=clips, url=comfyui_url, files=files, seconds=seconds)
