"""Build DiffusionPipe-shaped run directories: real TensorBoard event files + real safetensors LoRAs in stepN/."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class Events:
    """Scalars written the way SummaryWriter writes them (simple_value), with explicit wall times."""

    def __init__(self, run_dir: Path, suffix: str = "") -> None:
        self.writer = EventFileWriter(str(run_dir), filename_suffix=suffix)
        self.clock = 1_700_000_000.0

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.clock += 0.5
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(event_pb2.Event(wall_time=self.clock, step=int(step), summary=summary))

    def close(self) -> None:
        self.writer.close()


def save_lora(folder: Path, step: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(step)
    tensors = {
        "diffusion_model.blocks.0.self_attn.q.lora_A.weight": rng.standard_normal((4, 8), dtype=np.float32),
        "diffusion_model.blocks.0.self_attn.q.lora_B.weight": rng.standard_normal((8, 4), dtype=np.float32),
    }
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 4, "peft_type": "LORA"}))


def write_run(
    run_dir: Path,
    eval_loss: Callable[[int], float],
    steps: int = 200,
    every: int = 10,
    save_every: int | None = None,
    eval_name: str = "val",
    train_loss: Callable[[int], float] | None = None,
) -> Path:
    """A run of `steps` steps: eval at 0 and every `every` steps, LoRA saved every `save_every` (default: `every`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_every = save_every or every
    events = Events(run_dir)
    train_loss = train_loss or (lambda s: 0.06 + 0.08 * math.exp(-s / 60) + random.Random(s).gauss(0, 0.004))
    events.scalar(f"{eval_name}/loss", eval_loss(0), 0)
    for step in range(1, steps + 1):
        events.scalar("train/loss", train_loss(step), step)
        if step % every == 0:
            events.scalar(f"{eval_name}/loss", eval_loss(step), step)
        if step % save_every == 0:
            save_lora(run_dir / f"step{step}", step)
    events.close()
    return run_dir


def from_values(values: Sequence[float], every: int = 10) -> Callable[[int], float]:
    """eval loss at step k*every = values[k] (values[0] is the eval before the first step)."""
    return lambda step: values[step // every]


def noisy(curve: Callable[[int], float], sigma: float, seed: int = 0) -> Callable[[int], float]:
    return lambda step: curve(step) * (1 + random.Random(f"{seed}:{step}").gauss(0, sigma))


def exp_plateau(step: int) -> float:
    """Falls fast, then flat: true minimum at the last step, within 1% of it from step 130 on."""
    return 0.08 + 0.06 * math.exp(-step / 30)


def u_curve(step: int, total: int = 200, at: float = 0.6) -> float:
    """The sandbox trainer's 'converge' curve: falls to 0.08 at 60% of the run, then rises (overfitting)."""
    p = step / total
    if p <= at:
        return 0.08 + 0.06 * ((at - p) / at) ** 2
    return 0.08 + 0.036 * ((p - at) / (1 - at)) ** 2


def slow_decay(step: int) -> float:
    """Still falling clearly at step 200."""
    return 0.08 + 0.06 * math.exp(-step / 150)


def write_epoch_run(
    run_dir: Path, eval_loss: Callable[[int], float], epochs: int = 6, steps_per_epoch: int = 7
) -> Path:
    """Epoch-based eval and saves (period 1), in DiffusionPipe's order within an iteration: train scalars, eval,
    epoch_loss; folders epochN. The eval's x is the step that ended the epoch."""
    run_dir.mkdir(parents=True, exist_ok=True)
    events = Events(run_dir)
    events.scalar("val/loss", eval_loss(0), 0)
    for epoch in range(1, epochs + 1):
        for i in range(1, steps_per_epoch + 1):
            step = (epoch - 1) * steps_per_epoch + i
            if i == steps_per_epoch:
                save_lora(run_dir / f"epoch{epoch}", step)
            events.scalar("train/loss", 0.1, step)
        events.scalar("val/loss", eval_loss(step), step)
        events.scalar("train/epoch_loss", 0.1, epoch)
    events.close()
    return run_dir
