"""What counts as a caption, and what happens to images left without one. Standard library only: the client's
caption stage (caption.py) and the pod's supervisor (pods/supervisor.py) check captions the same way.

joy-caption-batch always overwrites and exits 0 even when captions failed, so every caption it should have written
is checked (present, non-empty, starting with the trigger word); images still without one after a retry are
dropped when at most DROP_FRACTION of the images are affected and at least `min_images` remain, otherwise the
stage fails naming them.
"""

from __future__ import annotations

import re
from pathlib import Path

DROP_FRACTION = 0.25

# What batch-alpha2.py prints (MNeMoNiCuZ/joy-caption-batch@80dd589, tests/upstream/README.md): one stdout line per
# caption file when --print-captioning-status is given, and everything else through logging.basicConfig with
# "%(asctime)s %(levelname)s: %(message)s" (stderr; the detached job's log holds both).
CAPTION_WRITTEN = re.compile(r"^Caption written to '(?P<path>.+)'$")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+): (?P<message>.*)$")


class TooManyFailed(ValueError):
    """More images failed than may be dropped: the message names them."""


def written_caption(line: str) -> str | None:
    """The caption path a `Caption written to '…'` line names, else None."""
    match = CAPTION_WRITTEN.match(line.rstrip("\r"))
    return match["path"] if match else None


def captioner_problems(lines: list[str]) -> list[str]:
    """The ERROR and WARNING messages the captioner logged (generation failures, unreadable images, crashes)."""
    found = []
    for line in lines:
        match = LOG_LINE.match(line.rstrip("\r"))
        if match and match["level"] in ("ERROR", "WARNING", "CRITICAL"):
            found.append(match["message"])
    return found


def stem_txt(name: str) -> str:
    return f"{Path(name).stem}.txt"


def caption_problem(text: str | None, trigger: str) -> str | None:
    """Why a caption file's text (None: no file) is not a valid caption, or None when it is."""
    if text is None:
        return "no caption written"
    if not text.strip():
        return "empty caption"
    if not text.strip().startswith(trigger):
        return f"caption does not start with {trigger!r}"
    return None


def failed_captions(folder: Path, names: list[str], trigger: str) -> dict[str, str]:
    """name -> why, for the images of `names` whose caption in `folder` is not valid."""
    failed = {}
    for name in names:
        path = folder / stem_txt(name)
        why = caption_problem(path.read_text(errors="replace") if path.is_file() else None, trigger)
        if why:
            failed[name] = why
    return failed


def listed(failed: dict[str, str]) -> str:
    return "; ".join(f"{n}: {why}" for n, why in sorted(failed.items()))


def to_drop(names: list[str], failed: dict[str, str], min_images: int) -> list[str]:
    """The images to drop from training, or TooManyFailed when too many failed to drop them."""
    remaining = len(names) - len(failed)
    if len(failed) <= DROP_FRACTION * len(names) and remaining >= min_images:
        return sorted(failed)
    raise TooManyFailed(f"JoyCaption could not caption {len(failed)} of {len(names)} image(s) even after a retry: "
                        f"{listed(failed)}")
