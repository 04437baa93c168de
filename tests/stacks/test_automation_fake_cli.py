"""The Automation wrapper and the `env` command against a stand-in `pulumi` that records its arguments."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pistachio_infra.cli import cli
from pistachio_infra.errors import MissingToolError
from pistachio_infra.stacks import automation
from pistachio_infra.stacks.automation import EnvOptions

FAKE = Path(__file__).with_name("fake_pulumi.py")


def _install_fake(root: Path, launcher: bool = True) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    pulumi.chmod(0o755)
    if launcher:
        shim = bin_dir / automation.LAUNCHER
        shim.write_text('#!/bin/sh\nexec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"\n')
        shim.chmod(0o755)
    return root


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    """PISTACHIO_HOME in tmp, no real pulumi reachable, the fake one under PISTACHIO_PULUMI_ROOT."""
    root = _install_fake(tmp_path / "pulumi-root")
    log = tmp_path / "pulumi.log"
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PISTACHIO_PULUMI_ROOT", str(root))
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_fake_key_for_the_stand_in")
    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PISTACHIO_SANDBOX"):
        monkeypatch.delenv(var, raising=False)

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def _args(call: dict) -> list[str]:
    return [a for a in call["args"] if a != "--non-interactive"]


def _commands(calls: list[dict]) -> list[list[str]]:
    return [_args(c) for c in calls if _args(c) and _args(c)[0] != "version"]


def test_up_selects_configures_and_runs_inline_with_our_python(fake_cli, tmp_path):
    said: list[str] = []
    options = EnvOptions(gpus=("a6000",), data_center="EU-RO-1", volume_gb=150, comfyui=True)
    outputs = automation.up(options, say=said.append)
    assert outputs == {"volume_id": "vol-1", "data_center_id": "EU-RO-1"}

    calls = fake_cli()
    commands = _commands(calls)
    assert any(c[:2] == ["stack", "select"] and "main" in c for c in commands)  # default stack off the sandbox
    config = next(c for c in commands if c[:2] == ["config", "set-all"])
    flat = " ".join(config)
    for expected in ('pistachio:dataCenter=EU-RO-1', 'pistachio:volumeGb=150', 'pistachio:comfyui=true',
                     'pistachio:gpus=["a6000"]'):
        assert expected in flat
    up = next(c for c in commands if c[0] == "up")
    assert "--yes" in up and "--skip-preview" in up
    assert any(a.startswith("--client=127.0.0.1:") for a in up)  # inline program served by this process
    assert up[up.index("--exec-kind") + 1] == "auto.inline"

    env = next(c for c in calls if _args(c)[:1] == ["up"])["env"]
    assert env["PULUMI_PYTHON_CMD"] == sys.executable
    home = tmp_path / "home" / "pulumi"
    assert env["PULUMI_HOME"] == str(home / "home")
    passphrase = Path(env["PULUMI_CONFIG_PASSPHRASE_FILE"])
    assert passphrase == home / "passphrase"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600 and len(passphrase.read_text().strip()) >= 32
    assert any("generated one in" in line for line in said)
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "pulumi-root" / "bin")  # plugins next to the CLI

    project = (home / "workspace" / "Pulumi.yaml").read_text()
    assert f"url: {(home / 'backend').as_uri()}" in project and "name: pistachio-env" in project


def test_passphrase_from_env_is_used_and_nothing_is_generated(fake_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse")
    said: list[str] = []
    automation.refresh("dev", say=said.append)
    refresh = next(c for c in fake_cli() if _args(c)[:1] == ["refresh"])
    assert refresh["env"]["PULUMI_CONFIG_PASSPHRASE"] == "correct horse"
    assert refresh["env"]["PULUMI_CONFIG_PASSPHRASE_FILE"] is None
    assert not (tmp_path / "home" / "pulumi" / "passphrase").exists() and not said
    assert any(c[:2] == ["stack", "select"] and "dev" in c for c in _commands(fake_cli()))


def test_sandbox_mode_uses_its_own_stack(fake_cli, sandbox):
    automation.destroy(say=lambda _: None)
    commands = _commands(fake_cli())
    assert any(c[:2] == ["stack", "select"] and "sandbox" in c for c in commands)
    assert any(c[0] == "destroy" and "--yes" in c for c in commands)


def test_missing_runpod_key_stops_before_the_engine(fake_cli, monkeypatch):
    from pistachio_infra.errors import CredentialsError

    monkeypatch.delenv("RUNPOD_API_KEY")
    with pytest.raises(CredentialsError, match="RUNPOD_API_KEY"):
        automation.up(EnvOptions(data_center="EU-RO-1"), say=lambda _: None)
    assert _commands(fake_cli()) == []


def test_engine_failure_is_one_line_error(fake_cli, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "destroy")
    result = CliRunner().invoke(cli, ["env", "destroy", "--yes"], standalone_mode=False)
    assert result.exception is not None
    assert "env destroy failed" in str(result.exception) and "the engine says no" in str(result.exception)


def test_missing_cli_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    monkeypatch.setenv("PISTACHIO_PULUMI_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("PISTACHIO_PULUMI_ROOT", raising=False)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # python, no pulumi
    with pytest.raises(MissingToolError, match=r"scripts/build_pulumi\.sh"):
        automation.pulumi_command()

    proc = subprocess.run([str(Path(sys.executable).parent / "pistachio-infra"), "env", "up"],
                          capture_output=True, text=True, env=os.environ, timeout=60)
    assert proc.returncode == 3  # a missing tool (errors.EXIT_CONFIG)
    assert proc.stderr.strip().startswith("error: the Pulumi CLI is not installed")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    outputs = subprocess.run([str(Path(sys.executable).parent / "pistachio-infra"), "env", "outputs"],
                             capture_output=True, text=True, env=os.environ, timeout=60)
    assert outputs.returncode == 0 and "no environment deployed" in outputs.stdout  # works without the CLI


def test_missing_dynamic_provider_launcher_is_named(tmp_path, monkeypatch):
    root = _install_fake(tmp_path / "root", launcher=False)
    monkeypatch.setenv("PISTACHIO_PULUMI_ROOT", str(root))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(MissingToolError, match="pulumi-resource-pulumi-python"):
        automation.pulumi_command()


def test_build_cache_is_found_without_path(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    for version in ("3.9.0", "3.274.1", "3.100.0"):
        _install_fake(cache / f"pulumi-v{version}")
    monkeypatch.setenv("PISTACHIO_PULUMI_CACHE", str(cache))
    monkeypatch.delenv("PISTACHIO_PULUMI_ROOT", raising=False)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert automation.pulumi_root() == cache / "pulumi-v3.274.1"


def test_env_help_does_not_import_pulumi():
    code = (
        "import sys; from click.testing import CliRunner; from pistachio_infra.cli import cli; "
        "r = CliRunner().invoke(cli, ['env', '--help']); assert r.exit_code == 0, r.output; "
        "assert 'preview' in r.output and 'destroy' in r.output; "
        "r = CliRunner().invoke(cli, ['env', 'up', '--help']); assert r.exit_code == 0, r.output; "
        "bad = [m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi.')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
