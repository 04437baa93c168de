"""Render the samples: each prompt with the LoRA and, with the same seed, without it; fetch the files; write the
contact sheet and a manifest. Needs only a ComfyUI URL (that already has the Wan files and the LoRA in its
models folders) and a local folder, so the client and the pod-side supervisor call the same function.

    samples = plan_samples(prompts, seed=42, resolution=512, clip=False)
    result = render_samples(ComfyClient(url), files, samples, lora="pip-lora.safetensors", out_dir=run/"samples")
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import PistachioError
from .client import ComfyClient
from .graph import Sample, WanFiles, build_graph, clip_frames
from .sheet import contact_sheet

MANIFEST = "samples.json"
SHEET = "samples.png"
CLIP_FRAMES = 33  # ComfyUI's Wan 2.1 text-to-video example length


@dataclass(frozen=True)
class Rendered:
    prompt: str
    seed: int
    kind: str  # "still" | "clip"
    without: str  # file name in the samples folder (no LoRA)
    with_lora: str  # file name in the samples folder (the LoRA applied)
    seconds: float  # wall time of the pair, queue to files fetched


@dataclass(frozen=True)
class SampleSet:
    folder: Path
    lora: str
    rendered: tuple[Rendered, ...]
    sheet: Path
    seconds: float

    def manifest(self) -> dict[str, object]:
        return {"lora": self.lora, "sheet": self.sheet.name, "seconds": round(self.seconds, 3),
                "samples": [asdict(r) for r in self.rendered]}


def plan_samples(prompts: list[str], *, seed: int, resolution: int = 512, clip: bool = False) -> list[Sample]:
    """One still per prompt (seeds seed, seed+1, …), plus one short clip of the first prompt when `clip`."""
    samples = [Sample(prompt=p, seed=seed + i, width=resolution, height=resolution) for i, p in enumerate(prompts)]
    if clip and prompts:
        samples.append(Sample(prompt=prompts[0], seed=seed, width=resolution, height=resolution,
                              frames=clip_frames(CLIP_FRAMES)))
    return samples


def render_samples(client: ComfyClient, files: WanFiles, samples: list[Sample], *, lora: str, out_dir: Path,
                   strength: float = 1.0, timeout_s: float = 1800.0, prefix: str = "pistachio",
                   say: Callable[[str], None] | None = None) -> SampleSet:
    """Queue every graph first (ComfyUI runs them in order), then follow each and fetch its file."""
    say = say or (lambda _m: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    queued: list[tuple[Sample, str, str, float]] = []
    for i, sample in enumerate(samples):
        pair = []
        for applied in (None, lora):
            tag = "with" if applied else "without"
            graph = build_graph(files, sample, lora=applied, strength=strength, prefix=f"{prefix}/{i:02d}-{tag}")
            pair.append(client.queue(graph))
        queued.append((sample, pair[0], pair[1], time.monotonic()))
    rendered = []
    for i, (sample, plain_id, lora_id, t0) in enumerate(queued):
        names = []
        for tag, prompt_id in (("without", plain_id), ("with", lora_id)):
            entry = client.wait(prompt_id, timeout=timeout_s)
            outs = client.outputs(entry)
            if not outs:
                raise PistachioError(f"ComfyUI finished prompt {prompt_id} without an output file",
                                     "look at ComfyUI's log; rerun the same command")
            suffix = Path(outs[0].filename).suffix or ".png"
            name = f"{i:02d}-{tag}{suffix}"
            (out_dir / name).write_bytes(client.view(outs[0]))
            names.append(name)
        kind = "clip" if sample.is_clip else "still"
        rendered.append(Rendered(prompt=sample.prompt, seed=sample.seed, kind=kind, without=names[0],
                                 with_lora=names[1], seconds=round(time.monotonic() - t0, 3)))
        say(f"sample {i + 1}/{len(samples)} ({kind}): {textwrap.shorten(sample.prompt, 60, placeholder=' …')}")
    sheet = contact_sheet([(r.prompt, out_dir / r.without, out_dir / r.with_lora) for r in rendered],
                          out_dir / SHEET, title=f"{lora}: samples with and without the LoRA")
    result = SampleSet(folder=out_dir, lora=lora, rendered=tuple(rendered), sheet=sheet,
                       seconds=time.monotonic() - started)
    (out_dir / MANIFEST).write_text(json.dumps(result.manifest(), indent=2) + "\n")
    return result


def load_manifest(folder: Path) -> dict[str, object] | None:
    path = folder / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
