"""Fixtures for the upstream-behaviour tests: the stand-in repos checked out the way a pod clones them, and a
sandbox HF hub. Each test here holds both our client code and the stand-in to one row of README.md."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pistachio_infra.sandbox import hf
from pistachio_infra.sandbox.image import PodImage
from pistachio_infra.sandbox.standins import build_repos

JOYCAPTION = "fancyfeast/llama-joycaption-alpha-two-hf-llava"


@pytest.fixture(scope="session")
def pod_image(tmp_path_factory) -> PodImage:
    return PodImage.ensure(tmp_path_factory.getbasetemp() / "pod-image-cache")


@pytest.fixture(scope="module")
def standin_repos(tmp_path_factory) -> dict[str, Path]:
    pins = build_repos(tmp_path_factory.mktemp("git"))
    out = {}
    for name in ("joy-caption-batch", "diffusion-pipe"):
        dest = tmp_path_factory.mktemp("checkout") / name
        subprocess.run(["git", "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules",
                        pins[name].url, str(dest)], check=True, capture_output=True)
        out[name] = dest
    return out


@pytest.fixture(scope="module")
def joycaption_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    hf.create_repo(root, JOYCAPTION, {"config.json": json.dumps({"model_type": "llava"}).encode(),
                                      "model.safetensors": b"\0" * 4096})
    with hf.serve(root) as endpoint:
        yield endpoint
