"""Small synthetic character datasets for the demo and the example campaign: "Pip", a round green mascot with a red
scarf and one antenna (and a few other mascots told apart by body, scarf and antenna colours), drawn in varied poses,
sizes, backgrounds and lighting. Deterministic by seed (same bytes for the same seed and character)."""

from __future__ import annotations

import math
import random
from pathlib import Path

SIZE = 512
BACKGROUNDS = [
    ((235, 225, 200), (250, 245, 230)),  # beige room
    ((120, 170, 230), (200, 230, 250)),  # sky
    ((60, 120, 70), (140, 190, 120)),  # meadow
    ((40, 40, 60), (90, 80, 120)),  # night
    ((230, 160, 120), (250, 210, 170)),  # sunset
    ((200, 200, 205), (240, 240, 245)),  # studio grey
]
POSES = ("standing", "waving", "jumping", "sitting", "leaning")
# name -> (body, scarf, antenna tip): what tells the characters apart
CHARACTERS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "pip": ((70, 170, 90), (210, 40, 50), (250, 210, 40)),
    "mira": ((140, 90, 190), (250, 200, 40), (90, 200, 230)),
    "bolt": ((235, 140, 50), (40, 90, 200), (240, 240, 240)),
    "juno": ((60, 170, 170), (230, 90, 160), (250, 120, 40)),
}


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]):
    from PIL import Image

    column = Image.new("RGB", (1, SIZE))
    column.putdata([
        tuple(round(a + (b - a) * y / (SIZE - 1)) for a, b in zip(top, bottom, strict=True)) for y in range(SIZE)
    ])
    return column.resize((SIZE, SIZE), Image.Resampling.NEAREST)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(c * factor))) for c in colour)  # type: ignore[return-value]


def draw_character(index: int, seed: int, character: str = "pip"):
    """One image of `character` (a key of CHARACTERS) as a PIL image."""
    from PIL import ImageDraw, ImageFilter

    rng = random.Random(f"{seed}:{index}")
    top, bottom = BACKGROUNDS[rng.randrange(len(BACKGROUNDS))]
    img = _gradient(_shade(top, rng.uniform(0.85, 1.1)), _shade(bottom, rng.uniform(0.85, 1.1)))
    draw = ImageDraw.Draw(img)
    # scenery: a floor line and a few background shapes
    floor = rng.randint(360, 440)
    draw.rectangle([0, floor, SIZE, SIZE], fill=_shade(bottom, 0.8))
    for _ in range(rng.randint(1, 4)):
        x, y, r = rng.randint(0, SIZE), rng.randint(20, floor - 40), rng.randint(15, 50)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_shade(top, rng.uniform(0.7, 1.2)))

    body_rgb, scarf_rgb, tip_rgb = CHARACTERS[character]
    light = rng.uniform(0.85, 1.15)
    body = _shade(body_rgb, light)
    scarf = _shade(scarf_rgb, light)
    pose = POSES[index % len(POSES)]
    scale = rng.uniform(0.75, 1.15)
    cx = rng.randint(150, SIZE - 150)
    lift = 60 if pose == "jumping" else 0
    base = floor - lift
    r_body = 70 * scale
    r_head = 52 * scale
    body_cy = base - r_body * (0.7 if pose == "sitting" else 1.0)
    lean = 25 * scale if pose == "leaning" else 0
    head_cx, head_cy = cx + lean, body_cy - r_body - r_head * 0.6

    # legs
    for side in (-1, 1):
        lx = cx + side * 30 * scale
        draw.line([lx, body_cy + r_body * 0.6, lx + side * 8, base + 4], fill=_shade(body, 0.7), width=int(14 * scale))
    # body and head
    draw.ellipse([cx - r_body, body_cy - r_body, cx + r_body, body_cy + r_body], fill=body)
    draw.ellipse([head_cx - r_head, head_cy - r_head, head_cx + r_head, head_cy + r_head], fill=_shade(body, 1.08))
    # antenna with a yellow ball
    tip = (head_cx + 10 * scale, head_cy - r_head - 40 * scale)
    draw.line([head_cx, head_cy - r_head, *tip], fill=(60, 60, 60), width=max(2, int(4 * scale)))
    draw.ellipse([tip[0] - 9 * scale, tip[1] - 9 * scale, tip[0] + 9 * scale, tip[1] + 9 * scale], fill=tip_rgb)
    # eyes (looking in a random direction) and mouth
    gaze = rng.uniform(-6, 6) * scale
    for side in (-1, 1):
        ex, ey = head_cx + side * 20 * scale, head_cy - 5 * scale
        draw.ellipse([ex - 12 * scale, ey - 14 * scale, ex + 12 * scale, ey + 14 * scale], fill=(255, 255, 255))
        draw.ellipse([ex + gaze - 5 * scale, ey - 5 * scale, ex + gaze + 5 * scale, ey + 5 * scale], fill=(20, 20, 20))
    draw.arc([head_cx - 18 * scale, head_cy + 5 * scale, head_cx + 18 * scale, head_cy + 28 * scale], 20, 160,
             fill=(30, 60, 30), width=max(2, int(3 * scale)))
    # the scarf: the character's signature
    draw.rectangle([cx - r_body * 0.8, body_cy - r_body * 0.95, cx + r_body * 0.8, body_cy - r_body * 0.7], fill=scarf)
    draw.polygon([(cx + r_body * 0.4, body_cy - r_body * 0.8), (cx + r_body * 0.9, body_cy - r_body * 0.1),
                  (cx + r_body * 0.6, body_cy - r_body * 0.05)], fill=_shade(scarf, 0.85))
    # arms by pose
    angle = {"waving": -60, "jumping": -35, "standing": 35, "sitting": 20, "leaning": 10}[pose]
    for side in (-1, 1):
        a = math.radians(angle if side == 1 else (angle if pose == "jumping" else 40))
        sx, sy = cx + side * r_body * 0.85, body_cy - r_body * 0.2
        ex, ey = sx + side * 55 * scale * math.cos(a), sy + 55 * scale * math.sin(a)
        draw.line([sx, sy, ex, ey], fill=_shade(body, 0.85), width=int(12 * scale))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img


def generate_dataset(folder: str | Path, count: int = 24, seed: int = 7, character: str = "pip") -> list[Path]:
    """Write `count` PNG images of `character` into `folder` (created); files with the same names are replaced."""
    if character not in CHARACTERS:
        raise ValueError(f"unknown sample character {character!r}; one of {', '.join(CHARACTERS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{character}_{i:02d}.png"
        draw_character(i, seed, character).save(path, format="PNG", optimize=False)
        paths.append(path)
    return paths
