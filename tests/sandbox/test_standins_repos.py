"""Stand-in git repos: deterministic commits, a real submodule, cloned with plain git, and drift commits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pistachio_infra.sandbox.standins import add_commit, build_repos

GIT = ["git", "-c", "protocol.file.allow=always"]  # what the pod's git config says (file:// submodule URL)


def clone(url: str, dest: Path, *extra: str) -> None:
    subprocess.run([*GIT, "clone", "--quiet", *extra, url, str(dest)], check=True, capture_output=True)


def test_commits_are_the_same_wherever_built(tmp_path):
    first, second = build_repos(tmp_path / "a"), build_repos(tmp_path / "b")
    assert set(first) == {"diffusion-pipe", "joy-caption-batch", "ComfyUI"}
    for name in first:
        assert first[name].commit == second[name].commit
        assert len(first[name].commit) == 40
        assert first[name].url == (tmp_path / "a" / f"{name}.git").as_uri()
    assert build_repos(tmp_path / "a") == first  # idempotent


def test_clone_with_submodules_at_the_pinned_commit(tmp_path):
    pins = build_repos(tmp_path / "git")
    dp = tmp_path / "diffusion-pipe"
    clone(pins["diffusion-pipe"].url, dp, "--recurse-submodules")
    head = subprocess.run(["git", "-C", str(dp), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert head.stdout.strip() == pins["diffusion-pipe"].commit
    assert (dp / "train.py").is_file() and (dp / "requirements.txt").is_file()
    assert (dp / "submodules" / "ComfyUI" / "comfy" / "__init__.py").is_file()

    jc = tmp_path / "joy-caption-batch"
    clone(pins["joy-caption-batch"].url, jc)
    assert (jc / "batch-alpha2.py").is_file()


def test_plain_clone_leaves_the_submodule_empty(tmp_path):
    pins = build_repos(tmp_path / "git")
    dp = tmp_path / "dp"
    clone(pins["diffusion-pipe"].url, dp)
    assert (dp / "submodules" / "ComfyUI").is_dir()
    assert not any((dp / "submodules" / "ComfyUI").iterdir())


def test_add_commit_moves_main_but_not_the_pin(tmp_path):
    pins = build_repos(tmp_path / "git")
    url = pins["joy-caption-batch"].url
    new = add_commit(Path(url.removeprefix("file://")), "upstream change", {"NEWS.md": "drifted\n"})
    assert new != pins["joy-caption-batch"].commit
    assert build_repos(tmp_path / "git") == pins  # the base pin is unchanged
    work = tmp_path / "jc"
    clone(url, work)
    assert (work / "NEWS.md").read_text() == "drifted\n"
    parent = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD^"], capture_output=True, text=True)
    assert parent.stdout.strip() == pins["joy-caption-batch"].commit
    subprocess.run(["git", "-C", str(work), "checkout", "--quiet", pins["joy-caption-batch"].commit], check=True)
    assert not (work / "NEWS.md").exists()
    # the same drift commit is made the same everywhere
    again = build_repos(tmp_path / "git2")
    assert add_commit(tmp_path / "git2" / "joy-caption-batch.git", "upstream change", {"NEWS.md": "drifted\n"}) == new
    assert {n: p.commit for n, p in again.items()} == {n: p.commit for n, p in pins.items()}


def test_comfyui_app_sits_on_the_submodule_commit(tmp_path):
    """ComfyUI pods clone the stand-in app; diffusion-pipe's submodule keeps pointing at the base commit below it."""
    pins = build_repos(tmp_path / "git")
    app = tmp_path / "ComfyUI"
    clone(pins["ComfyUI"].url, app)
    head = subprocess.run(["git", "-C", str(app), "rev-parse", "HEAD", "HEAD^"], capture_output=True, text=True)
    dp = tmp_path / "dp"
    clone(pins["diffusion-pipe"].url, dp, "--recurse-submodules")
    sub = subprocess.run(["git", "-C", str(dp / "submodules" / "ComfyUI"), "rev-parse", "HEAD"],
                         capture_output=True, text=True)
    assert head.stdout.split() == [pins["ComfyUI"].commit, sub.stdout.strip()]
    assert (app / "main.py").is_file() and (app / "requirements.txt").is_file()
    assert (app / "models" / "loras").is_dir() and (app / "custom_nodes").is_dir()
