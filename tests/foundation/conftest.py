from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every foundation test keeps its state in a tmp PISTACHIO_HOME and sees no real credentials."""
    state = tmp_path / "state"
    monkeypatch.setenv("PISTACHIO_HOME", str(state))
    for name in ("RUNPOD_API_KEY", "HF_TOKEN", "WANDB_API_KEY", "PISTACHIO_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    return state


def _color(i: int) -> tuple[int, int, int]:
    return ((i * 37) % 256, (i * 91 + 40) % 256, (i * 53 + 90) % 256)


@pytest.fixture
def make_images() -> Callable[..., list[Path]]:
    """Write `n` distinct, decodable images into a folder (created if needed)."""
    from PIL import Image, ImageDraw

    def make(folder: Path, n: int, size: tuple[int, int] = (400, 400), fmt: str = "png", start: int = 0,
             captions: dict[int, str] | None = None) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(start, start + n):
            im = Image.new("RGB", size, _color(i))
            ImageDraw.Draw(im).rectangle([i % 50, i % 40, size[0] // 2, size[1] // 2], fill=_color(i + 7))
            path = folder / f"img{i:03d}.{fmt}"
            im.save(path, **({"compress_level": 1} if fmt == "png" else {}))
            paths.append(path)
            if captions and i in captions:
                path.with_suffix(".txt").write_text(captions[i])
        return paths

    return make


PROJECT_TOML = """
[project]
name = "test-project"
comfyui_loras_dir = "comfy/loras"

[jobs.alice]
character = "Alice"
trigger = "al1ce"
dataset = "data/alice"
gpu = ["4090", "a40"]
epochs = 40
wandb_project = "loras"
"""


@pytest.fixture
def project_dir(tmp_path: Path, make_images) -> Path:
    folder = tmp_path / "proj"
    make_images(folder / "data" / "alice", 24)
    (folder / "pistachio.toml").write_text(PROJECT_TOML)
    return folder
