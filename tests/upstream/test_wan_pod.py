"""What a Wan training pod needs beyond requirements.txt, read from tdrussell/diffusion-pipe@8f83dbf:
rows T5 (models/wan/attention.py: flash-attn 2 asserted unless flash-attn 3 imports) and T7 (models/wan/tokenizers.py
+ configs.py: AutoTokenizer.from_pretrained(<ckpt>/google/umt5-xxl) reads the whole tokenizer folder) of
tests/upstream/README.md. The client side (manifests, pins, the bootstrap) and the stand-ins are held to both."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pistachio_infra.catalog import base_model, sources
from pistachio_infra.endpoints import Cloud
from pistachio_infra.pods.bootstrap import render_script
from pistachio_infra.sandbox import pypi
from pistachio_infra.sandbox.hf.seed import _wan_files

UMT5 = "google/umt5-xxl"
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model"}


def standin_trainer(repo: Path):
    spec = importlib.util.spec_from_file_location("standin_train_wan", repo / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_t7_the_manifest_fetches_the_whole_t5_tokenizer_folder():
    manifest = base_model("wan21-t2v-14b")
    fetched = {f.path for f in manifest.files if f.path.startswith(f"{UMT5}/")}
    assert fetched == {f"{UMT5}/{name}" for name in TOKENIZER_FILES}
    for f in manifest.files:
        if f.path.startswith(f"{UMT5}/"):
            assert f.dest == f"{manifest.ckpt_dir}/{f.path}"  # <ckpt>/google/umt5-xxl, as tokenizers.py loads it
    # the HF stand-in serves the same set under the real repo id
    assert {p for p in _wan_files() if p.startswith(f"{UMT5}/")} == fetched


@pytest.mark.parametrize("missing", sorted(TOKENIZER_FILES))
def test_t7_the_standin_loader_reads_every_tokenizer_file(standin_repos, tmp_path, missing):
    trainer = standin_trainer(standin_repos["diffusion-pipe"])
    folder = tmp_path / UMT5
    folder.mkdir(parents=True)
    served = _wan_files()
    for name in TOKENIZER_FILES:
        (folder / name).write_bytes(served[f"{UMT5}/{name}"]())
    trainer.load_t5_tokenizer(folder)  # the full set loads
    (folder / missing).unlink()
    with pytest.raises(OSError, match="Can't load tokenizer for"):
        trainer.load_t5_tokenizer(folder)


def _cloud(**overrides) -> Cloud:
    return Cloud(rest_url="http://x/v2", graphql_base="http://x", api_key="k", hf_endpoint="http://hf",
                 hf_token=None, sandbox=False, **overrides)


def test_t5_the_bootstrap_installs_the_pinned_flash_attn_wheel_before_the_repos_requirements():
    wheel = sources().wheels["flash-attn"]
    # built for the image we rent: torch 2.8, CUDA 12, CPython 3.12, the C++11 ABI of PyTorch's pip wheels
    image = sources().image.name
    assert "torch280" in image and "cu128" in image
    assert wheel.url.startswith("https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/")
    assert wheel.url.endswith("cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl")
    assert wheel.import_name == "flash_attn"
    script = next(t for p, t in render_script(_cloud(), "/workspace", ()).items() if p.endswith("/bootstrap.sh"))
    requirement = f"flash-attn @ {wheel.url} --hash=sha256:{wheel.sha256}"
    assert requirement in script and "--require-hashes" in script
    assert script.index("wheel:flash-attn") < script.index("deps:diffusion-pipe")  # frozen sets find it installed


def test_t5_the_sandbox_index_serves_a_stand_in_wheel_the_trainer_accepts(tmp_path):
    built = pypi.build_index(tmp_path / "a")
    again = pypi.build_index(tmp_path / "b")
    assert built["flash-attn"][1] == again["flash-attn"][1]  # deterministic: the same sha256 everywhere
    path, sha = built["flash-attn"]
    assert path.name.startswith("flash_attn-2.8.3+") and path.name.endswith("-py3-none-any.whl")
    pins = pypi.wheel_pins(built, "http://127.0.0.1:1")
    assert pins == {"flash-attn": {"url": f"http://127.0.0.1:1/pypi/packages/{path.name}", "sha256": sha}}
    script = next(t for p, t in render_script(_cloud(wheel_overrides={"flash-attn": _pin(pins)}), "/workspace",
                                              ()).items() if p.endswith("/bootstrap.sh"))
    assert f"flash-attn @ http://127.0.0.1:1/pypi/packages/{path.name} --hash=sha256:{sha}" in script


def _pin(pins: dict) -> object:
    from pistachio_infra.catalog import WheelPin

    return WheelPin(**pins["flash-attn"])


def test_t5_lock_records_the_wheel_pin():
    from pistachio_infra.lock.lockfile import pinned_wheels

    locked = pinned_wheels(_cloud())
    wheel = sources().wheels["flash-attn"]
    assert json.loads(locked["flash-attn"].model_dump_json()) == {
        "version": wheel.version, "url": wheel.url, "sha256": wheel.sha256, "import_name": "flash_attn"}
