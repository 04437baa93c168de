"""The contact sheet: one row per prompt, the sample without the LoRA beside the one with it (same seed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

THUMB = 256
LABEL_H = 44
PAD = 8


def _thumb(path: Path) -> object:
    from PIL import Image

    with Image.open(path) as img:
        img.seek(0)  # a clip: its first frame
        frame = img.convert("RGB")
    frame.thumbnail((THUMB, THUMB))
    return frame


def contact_sheet(rows: list[tuple[str, Path, Path]], out: Path, *, title: str = "") -> Path:
    """rows: (prompt, without-LoRA file, with-LoRA file). Writes a PNG at `out`."""
    from PIL import Image, ImageDraw

    head = LABEL_H if title else 0
    width = PAD * 3 + THUMB * 2
    height = head + len(rows) * (THUMB + LABEL_H + PAD) + PAD
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((PAD, PAD), title, fill=(20, 20, 20))
        draw.text((PAD, PAD + 16), "left: without the LoRA    right: with it (same seed)", fill=(90, 90, 90))
    y = head + PAD
    for prompt, without, with_lora in rows:
        label = textwrap.shorten(prompt, width=80, placeholder="…")
        draw.text((PAD, y), "\n".join(textwrap.wrap(label, 64)[:2]), fill=(30, 30, 30))
        y += LABEL_H - PAD
        for i, path in enumerate((without, with_lora)):
            sheet.paste(_thumb(path), (PAD + i * (THUMB + PAD), y))  # type: ignore[arg-type]
        y += THUMB + PAD * 2
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
