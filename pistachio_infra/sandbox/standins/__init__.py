"""Stand-in `diffusion-pipe`, `joy-caption-batch` and `ComfyUI` git repos for the sandbox, as local file:// URLs.

`build_repos(dest)` writes bare repos at deterministic commits (fixed author, committer and dates; the submodule
URL is relative), so the commit shas are the same on every machine. The repos hold the source files next to this
module: `diffusion_pipe/` (train.py, with `submodules/ComfyUI` as a real git submodule from `comfyui/`) and
`joy_caption_batch/` (batch-alpha2.py). `ComfyUI.git` has two commits: the base one (the `comfy` package that
diffusion-pipe's submodule points at) and, on top, the stand-in ComfyUI app from `comfyui/app/` (main.py serving
/system_stats, /object_info, /queue, /models on ComfyUI's real flags; the real models/ folder layout) that ComfyUI
pods clone (`up --role comfyui`). `add_commit` moves a repo's `main` forward (drift tests for `lock`).

Pod sessions clone them with plain git: the pod's git config allows the file protocol for submodules (see
podhost.py), which git refuses by default for file:// submodule URLs.

Behaviour knobs: a JSON file named by $PISTACHIO_STANDIN_SCENARIO in the pod's environment. Every key is optional;
the defaults are `DEFAULT_SCENARIO`:

trainer (diffusion-pipe train.py)
  seconds_per_step   wall time of one training step (0.05)
  seconds_per_eval   wall time of one eval pass per eval dataset (0.02)
  curve              shape of the eval loss over the planned steps:
                       "converge" falls, bottoms at min_at_fraction, then rises (overfitting)
                       "plateau"  falls until min_at_fraction, then stays flat (never clearly bottoms)
                       "diverge"  rises from the start
                       "nan"      like converge until nan_at_fraction, then every loss is NaN
  min_at_fraction    where the eval loss bottoms, as a fraction of the planned steps (0.6)
  start_loss         eval loss before the first step (0.14)
  min_loss           eval loss at the bottom (0.08)
  noise              relative Gaussian noise on every loss, seeded by step (0.01)
  nan_at_fraction    for curve "nan" (0.5)
  lora_dim           width of the saved LoRA tensors, scaled down from Wan's 5120 (64)
  lora_blocks        transformer blocks with LoRA tensors, scaled down from Wan 14B's 40 (2)
  seed               seeds noise and weights (0)
captioner (joy-caption-batch batch-alpha2.py)
  fail_images        file names or glob patterns; a batch holding one fails in generate() ("Generation failed: …"),
                     the whole batch gets no captions, and the script still exits 0 ([])
  seconds_per_image  wall time per captioned image (0.01)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ...catalog import RepoPin

HERE = Path(__file__).resolve().parent

DEFAULT_SCENARIO: dict[str, dict] = {
    "trainer": {
        "seconds_per_step": 0.05,
        "seconds_per_eval": 0.02,
        "curve": "converge",
        "min_at_fraction": 0.6,
        "start_loss": 0.14,
        "min_loss": 0.08,
        "noise": 0.01,
        "nan_at_fraction": 0.5,
        "lora_dim": 64,
        "lora_blocks": 2,
        "seed": 0,
    },
    "captioner": {"fail_images": [], "seconds_per_image": 0.01},
}

IDENTITY = {"GIT_AUTHOR_NAME": "pistachio sandbox", "GIT_AUTHOR_EMAIL": "sandbox@pistachio.invalid",
            "GIT_COMMITTER_NAME": "pistachio sandbox", "GIT_COMMITTER_EMAIL": "sandbox@pistachio.invalid"}
BASE_TAG = "sandbox-base"

# name -> (source folder, files in the repo -> file under the source folder, commit date, message)
REPOS: dict[str, tuple[str, dict[str, str], str, str]] = {
    "ComfyUI": ("comfyui", {"README.md": "README.md", "comfy/__init__.py": "comfy/__init__.py"},
                "2026-08-18T12:00:00+00:00", "sandbox stand-in for ComfyUI (the comfy package diffusion-pipe imports)"),
    "diffusion-pipe": ("diffusion_pipe", {"README.md": "README.md", "requirements.txt": "requirements.txt",
                                          "train.py": "train.py"},
                       "2026-08-20T18:03:33-05:00", "sandbox stand-in for diffusion-pipe (Wan LoRA trainer)"),
    "joy-caption-batch": ("joy_caption_batch", {"README.md": "README.md", "requirements.txt": "requirements.txt",
                                                "batch-alpha2.py": "batch-alpha2.py"},
                          "2025-08-25T17:37:44+02:00", "sandbox stand-in for joy-caption-batch (JoyCaption Alpha Two)"),
}
# the ComfyUI app commit on top of the base ComfyUI.git commit: repo path -> file under comfyui/app/
COMFYUI_APP = ({"main.py": "main.py", "nodes.py": "nodes.py", "execution.py": "execution.py",
                "comfyui_version.py": "comfyui_version.py",
                "requirements.txt": "requirements.txt"},
               "2026-11-02T16:20:00+00:00", "sandbox stand-in for ComfyUI v0.35.0 (main.py serves the HTTP API)")
COMFYUI_APP_TAG = "sandbox-comfyui-app"
# ComfyUI's models/ folders, each with the placeholder file the real repo keeps in it
COMFYUI_MODEL_FOLDERS = ("checkpoints", "clip", "clip_vision", "configs", "controlnet", "diffusers",
                         "diffusion_models", "embeddings", "gligen", "hypernetworks", "loras", "photomaker",
                         "style_models", "text_encoders", "unet", "upscale_models", "vae", "vae_approx")
GITMODULES = '[submodule "submodules/ComfyUI"]\n\tpath = submodules/ComfyUI\n\turl = ../ComfyUI.git\n'


def _git(repo: Path, *args: str, stdin: str | bytes | None = None, env: dict[str, str] | None = None) -> str:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args], input=data, capture_output=True, check=True,
        env={**os.environ, **IDENTITY, **(env or {})},
    )
    return result.stdout.decode().strip()


def _commit(repo: Path, files: dict[str, bytes], message: str, date: str, *, parent: str | None = None,
            gitlinks: dict[str, str] | None = None) -> str:
    """Writes blobs, a tree (the parent's tree plus `files`/`gitlinks`) and a commit; moves `main` to it."""
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if parent:
            _git(repo, "read-tree", parent, env=index)
        entries = [f"100644 {_git(repo, 'hash-object', '-w', '--stdin', stdin=data)}\t{path}"
                   for path, data in sorted(files.items())]
        entries += [f"160000 {sha}\t{path}" for path, sha in sorted((gitlinks or {}).items())]
        _git(repo, "update-index", "--add", "--index-info", stdin="\n".join(entries) + "\n", env=index)
        tree = _git(repo, "write-tree", env=index)
    dates = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    sha = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=dates)
    _git(repo, "update-ref", "refs/heads/main", sha)
    _git(repo, "update-server-info")
    return sha


def _init_bare(path: Path) -> None:
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True, capture_output=True)
    _git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    _git(path, "config", "uploadpack.allowReachableSHA1InWant", "true")


def _build_one(dest: Path, name: str, gitlinks: dict[str, str] | None = None) -> str:
    folder, files, date, message = REPOS[name]
    repo = dest / f"{name}.git"
    if repo.exists():
        try:
            return _git(repo, "rev-parse", f"{BASE_TAG}^{{commit}}")
        except subprocess.CalledProcessError:
            shutil.rmtree(repo)  # a half-built repo from an interrupted run
    tmp_repo = dest / f".{name}.git.tmp"
    shutil.rmtree(tmp_repo, ignore_errors=True)
    _init_bare(tmp_repo)
    contents = {path: (HERE / folder / src).read_bytes() for path, src in files.items()}
    if gitlinks:
        contents[".gitmodules"] = GITMODULES.encode()
    sha = _commit(tmp_repo, contents, message, date, gitlinks=gitlinks)
    _git(tmp_repo, "tag", BASE_TAG, sha)
    tmp_repo.rename(repo)
    return sha


def _build_comfyui_app(dest: Path, base: str) -> str:
    """The stand-in ComfyUI app: a commit on top of ComfyUI.git's base commit, tagged (kept if already there)."""
    repo = dest / "ComfyUI.git"
    try:
        return _git(repo, "rev-parse", f"{COMFYUI_APP_TAG}^{{commit}}")
    except subprocess.CalledProcessError:
        pass
    files, date, message = COMFYUI_APP
    contents = {path: (HERE / "comfyui" / "app" / src).read_bytes() for path, src in files.items()}
    contents.update({f"models/{folder}/put_{folder}_here": b"" for folder in COMFYUI_MODEL_FOLDERS})
    contents["custom_nodes/example_node.py.example"] = b"# custom node packs go in folders here\n"
    sha = _commit(repo, contents, message, date, parent=base)
    _git(repo, "tag", COMFYUI_APP_TAG, sha)
    return sha


def build_repos(dest: Path) -> dict[str, RepoPin]:
    """Bare stand-in repos under `dest` (kept if already there); name -> RepoPin(file:// URL, pinned commit)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    comfy = _build_one(dest, "ComfyUI")
    pins = {
        "diffusion-pipe": _build_one(dest, "diffusion-pipe", gitlinks={"submodules/ComfyUI": comfy}),
        "joy-caption-batch": _build_one(dest, "joy-caption-batch"),
        "ComfyUI": _build_comfyui_app(dest, comfy),
    }
    return {name: RepoPin(url=(dest / f"{name}.git").resolve().as_uri(), commit=sha) for name, sha in pins.items()}


def add_commit(repo: Path, message: str, files: dict[str, str]) -> str:
    """A new commit on `main` of a stand-in repo (a bare repo path or its file:// URL), one hour after the last."""
    if isinstance(repo, str) and repo.startswith("file://"):
        repo = Path(repo.removeprefix("file://"))
    repo = Path(repo)
    parent = _git(repo, "rev-parse", "refs/heads/main")
    last = int(_git(repo, "log", "-1", "--format=%ct", parent))
    date = f"{last + 3600} +0000"
    return _commit(repo, {path: text.encode() for path, text in files.items()}, message, date, parent=parent)
