"""pistachio.lock without pods: model pins from the HF stand-in, the TOML round trip, errors, upgrade choices."""

from __future__ import annotations

import difflib
import hashlib
from contextlib import closing
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.errors import ConfigError
from pistachio_infra.lock.drift import compare_locks
from pistachio_infra.lock.lockfile import (
    Lock,
    RepoLock,
    current_image,
    current_tool,
    dump_lock,
    frozen_requirements,
    load_lock,
    python_envs,
    resolve_gpu_classes,
    resolve_models,
    write_lock,
)
from pistachio_infra.lock.rebuild import upgrade_parts
from pistachio_infra.state import Store

from .conftest import cli

SHA = "0123456789abcdef0123456789abcdef01234567"


def _lock(models=None) -> Lock:
    envs = python_envs()
    envs["system"] = envs["system"].model_copy(update={"python_version": "3.12.3",
                                                       "packages": {"numpy": "2.1.0", "safetensors": "0.4.5"}})
    return Lock(
        cloud="runpod",
        tool=current_tool(),
        image=current_image(),
        repos={"diffusion-pipe": RepoLock(url="https://github.com/tdrussell/diffusion-pipe", commit=SHA,
                                          submodules={"submodules/ComfyUI": "f" * 40})},
        python=envs,
        models=models or {},
        gpu_classes=resolve_gpu_classes(),
    )


def test_model_pins_come_from_the_hub_and_match_the_bytes_it_serves(sandbox):
    cloud = resolve_cloud()
    models = resolve_models(cloud, ["wan21-t2v-14b", "joycaption-alpha-two"])
    api = HfApi(endpoint=cloud.hf_endpoint)
    wan = models["wan21-t2v-14b"]
    assert not wan.snapshot and len(wan.files) == 13  # config, VAE, T5, the 4 tokenizer files, 6 shards
    main = api.model_info("Wan-AI/Wan2.1-T2V-14B").sha
    assert {f.revision for f in wan.files} == {main}
    joy = models["joycaption-alpha-two"]
    repo_files = {s.rfilename for s in api.model_info(joy.files[0].repo_id).siblings}
    assert joy.snapshot and {f.path for f in joy.files} == repo_files  # a snapshot pins every file it downloads
    for f in [*wan.files[:3], *joy.files]:  # LFS (sha256 from the API) and plain git files (hashed locally)
        data = Path(hf_hub_download(f.repo_id, f.path, revision=f.revision, endpoint=cloud.hf_endpoint,
                                    cache_dir=sandbox.home / "dl")).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f.sha256, f.size), f.path


def test_round_trip_and_one_line_per_pin(tmp_path):
    lock = _lock()
    path = write_lock(lock, tmp_path / "pistachio.lock")
    again = load_lock(path)
    assert again == lock and again.digest() == lock.digest()
    text = path.read_text()
    assert text.startswith("# pistachio.lock") and '"submodules/ComfyUI" = "ffff' in text

    bumped = lock.model_copy(deep=True)
    bumped.python["system"].packages["numpy"] = "2.2.0"
    diff = [d for d in difflib.unified_diff(text.splitlines(), dump_lock(bumped).splitlines(), lineterm="", n=0)
            if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    assert diff == ['-numpy = "2.1.0"', '+numpy = "2.2.0"']
    assert bumped.digest() != lock.digest()
    (item,) = compare_locks(lock, bumped).drifted
    assert (item.component, item.name, item.pinned, item.actual) == ("python", "system: numpy", "2.1.0", "2.2.0")


def test_frozen_requirements_pin_every_package_of_each_interpreter():
    frozen = frozen_requirements(_lock())
    lines = [x for x in frozen["diffusion-pipe"].splitlines() if not x.startswith("#")]
    assert lines == ["numpy==2.1.0", "safetensors==0.4.5"]
    assert [x for x in frozen["joy-caption-batch"].splitlines() if not x.startswith("#")] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lock_version = [", "is not valid TOML"),
        ("lock_version = 7\n", "lock_version 7"),
        ('lock_version = 1\ncloud = "runpod"\n[tool]\nversion = "1"\n[image]\nname = "x"\n'
         '[repos.diffusion-pipe]\nurl = "u"\ncommit = "main"\n', "repos.diffusion-pipe.commit"),
    ],
)
def test_a_broken_lock_is_a_one_line_error(tmp_path, text, expected):
    path = tmp_path / "pistachio.lock"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_lock(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_upgrade_components():
    lock = _lock()
    assert upgrade_parts(lock, "diffusion-pipe") == {"diffusion-pipe", "python"}  # requirements may change
    assert upgrade_parts(lock, "image") == {"image"}
    with pytest.raises(ConfigError, match=r"unknown lock component 'torch'.*diffusion-pipe"):
        upgrade_parts(lock, "torch")


def test_bad_input_is_refused_before_any_pod_or_network(tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PISTACHIO_SANDBOX", raising=False)
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_not_a_real_key_for_this_test_000")
    monkeypatch.setenv("PISTACHIO_RUNPOD_REST_URL", "http://127.0.0.1:9/v2")  # nothing listens: must not be called
    sandbox_lock = tmp_path / "sandbox.lock"
    write_lock(_lock().model_copy(update={"cloud": "sandbox"}), sandbox_lock)

    exists = cli("lock", "--out", str(sandbox_lock))
    assert exists.returncode == 3 and "already exists" in exists.stderr and "--upgrade" in exists.stderr
    other_cloud = cli("rebuild", "--lock", str(sandbox_lock))
    assert other_cloud.returncode == 3 and "written against sandbox" in other_cloud.stderr
    missing = cli("rebuild", "--lock", str(tmp_path / "nope.lock"))
    assert missing.returncode == 3 and "does not exist" in missing.stderr
    gpu = cli("rebuild", "--lock", str(sandbox_lock), "--gpu", "a9000")
    assert gpu.returncode == 3 and "unknown GPU class" in gpu.stderr
    for run in (exists, other_cloud, missing, gpu):
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    with closing(Store()) as store:
        assert store.pods() == []  # nothing was rented
