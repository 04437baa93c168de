from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from pistachio_infra.cli import cli
from pistachio_infra.config.project import load_project
from pistachio_infra.errors import ConfigError, DatasetError

EXE = Path(sys.executable).parent / "pistachio-infra"


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXE), *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=60
    )


def test_gpus_lists_every_class_with_its_runpod_id():
    result = invoke("gpus")
    assert result.exit_code == 0, result.output
    for name in ("a6000", "a40", "l40s", "4090", "3090", "a100", "h100", "h200"):
        assert name in result.output
    assert "NVIDIA H200" in result.output and "$0.60/h" in result.output


def test_render_writes_checked_configs(project_dir, tmp_path):
    out = tmp_path / "rendered"
    result = invoke("render", "alice", "--project", str(project_dir / "pistachio.toml"), "--out", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["dataset.toml", "eval_dataset.toml", "joycaption.toml", "train.toml"]
    train = tomllib.loads((out / "train.toml").read_text())
    assert train["blocks_to_swap"] == 32  # the job's first class is a 4090
    assert "--prepend-string 'al1ce, '" in result.output
    a40 = invoke("render", "alice", "--project", str(project_dir / "pistachio.toml"), "--gpu", "a40", "--out",
                 str(tmp_path / "a40"))
    assert a40.exit_code == 0 and "blocks_to_swap" not in (tmp_path / "a40" / "train.toml").read_text()


def test_render_unknown_gpu_lists_valid_classes(project_dir, tmp_path):
    result = invoke("render", "alice", "--project", str(project_dir / "pistachio.toml"), "--gpu", "foo",
                    "--out", str(tmp_path / "x"))
    assert isinstance(result.exception, ConfigError)
    assert "unknown GPU class 'foo'" in str(result.exception) and "a6000, a40, l40s" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_dataset_check_ok_and_refused(tmp_path, make_images):
    make_images(tmp_path / "good", 21)
    ok = invoke("dataset", "check", str(tmp_path / "good"), "--trigger", "zxq7", "--manifest", str(tmp_path / "m.json"))
    assert ok.exit_code == 0, ok.output
    assert "21 usable image(s)" in ok.output and "17 train, 4 eval" in ok.output and (tmp_path / "m.json").exists()
    make_images(tmp_path / "bad", 3)
    bad = invoke("dataset", "check", str(tmp_path / "bad"))
    assert isinstance(bad.exception, DatasetError) and "3 usable image" in bad.output


def test_init_writes_a_loadable_project_and_a_private_key(tmp_path, home):
    target = tmp_path / "newproj" / "pistachio.toml"
    result = invoke("init", "--path", str(target))
    assert result.exit_code == 0, result.output
    project = load_project(target)
    assert project.project.name == "newproj" and "my-character" in project.jobs
    key = home / "ssh" / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (home / "ssh" / "id_ed25519.pub").read_text().startswith("ssh-ed25519 ")
    before = key.read_bytes(), target.read_text()
    again = invoke("init", "--path", str(target))
    assert "kept" in again.output and (key.read_bytes(), target.read_text()) == before


def test_doctor_reports_missing_without_printing_secrets(tmp_path):
    missing = invoke("doctor")
    assert missing.exit_code == 3
    assert "RUNPOD_API_KEY" in missing.output and "SSH key" in missing.output
    assert "pistachio-infra init" in missing.output
    invoke("init", "--path", str(tmp_path / "pistachio.toml"))
    secret = "rpa_SUPERSECRET_123456"
    ready = invoke("doctor", env={"RUNPOD_API_KEY": secret, "HF_TOKEN": "hf_ALSOSECRET_999"})
    assert ready.exit_code == 0, ready.output
    assert secret not in ready.output and "hf_ALSOSECRET_999" not in ready.output
    assert "set (environment)" in ready.output and "ready" in ready.output


def test_doctor_refuses_a_world_readable_credentials_file(home):
    invoke("init", "--path", str(home / "p.toml"))
    creds = home / "credentials.toml"
    creds.write_text('RUNPOD_API_KEY = "rpa_fromfile_123456"\n')
    creds.chmod(0o644)
    result = invoke("doctor")
    assert result.exit_code == 3 and "chmod 600" in result.output and "rpa_fromfile_123456" not in result.output
    creds.chmod(0o600)
    result = invoke("doctor")
    assert result.exit_code == 0 and "set (credentials file)" in result.output


@pytest.mark.skipif(not EXE.exists(), reason="console script not installed")
def test_real_subprocess(project_dir, tmp_path, make_images):
    bad_gpu = run("render", "alice", "--gpu", "foo", "--out", str(tmp_path / "o"), cwd=project_dir)
    assert bad_gpu.returncode == 3  # bad configuration (errors.EXIT_CONFIG)
    assert bad_gpu.stderr.strip() == (
        "error: unknown GPU class 'foo' — use one of: a6000, a40, l40s, 4090, 3090, a100, h100, h200"
    )
    assert "Traceback" not in bad_gpu.stderr
    good = run("render", "alice", "--gpu", "h200", "--out", str(tmp_path / "o"), cwd=project_dir)
    assert good.returncode == 0, good.stderr
    assert "micro_batch_size_per_gpu = 8" in (tmp_path / "o" / "train.toml").read_text()
    make_images(tmp_path / "few", 2)
    refused = run("dataset", "check", str(tmp_path / "few"))
    assert refused.returncode == 3 and refused.stderr.startswith("error: ") and "2 usable image" in refused.stderr
    gpus = run("gpus")
    assert gpus.returncode == 0 and "NVIDIA RTX A6000" in gpus.stdout
