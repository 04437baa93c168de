"""What DiffusionPipe's train.py prints, read as progress: steps, loss, epoch, resume, saves, the wandb URL and the
end. Standard library only: the client's train stage and the pod's supervisor (pods/supervisor.py) read the same
log with the same parser."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

COMPLETE = "TRAINING COMPLETE!"
STEP_RE = re.compile(r"\bsteps:\s*(\d+)\s+loss:\s*(\S+)")
EPOCH_RE = re.compile(r"Started new epoch: (\d+)")
RESUME_RE = re.compile(r"Resuming at epoch: (\d+), step: (\d+)")
SAVE_RE = re.compile(r"Saving model to directory (\S+)")
WANDB_RE = re.compile(r"View run .* at:? (https?://\S+)")


@dataclass
class Progress:
    total: int
    step: int = 0
    epoch: int = 1
    loss: float | None = None
    eval_loss: float | None = None
    wandb_url: str | None = None
    complete: bool = False
    saves: list[str] = field(default_factory=list)
    resumed_at: int | None = None
    pending: str = ""
    tail: list[str] = field(default_factory=list)

    def feed(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.tail = [*self.tail, line][-20:]
            if m := STEP_RE.search(line):
                self.step = int(m.group(1))
                with contextlib.suppress(ValueError):
                    self.loss = float(m.group(2))
            elif m := EPOCH_RE.search(line):
                self.epoch = int(m.group(1))
            elif m := RESUME_RE.search(line):
                # train.py@8f83dbf prints the step it is about to run (the checkpoint's step + 1)
                self.epoch, self.step = int(m.group(1)), int(m.group(2)) - 1
                self.resumed_at = self.step
            elif m := SAVE_RE.search(line):
                self.saves.append(m.group(1))
            elif m := WANDB_RE.search(line):
                self.wandb_url = m.group(1)
            elif COMPLETE in line:
                self.complete = True
