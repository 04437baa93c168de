"""`pistachio-infra sandbox up|down|status|reset` through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from pistachio_infra.cli import cli
from pistachio_infra.sandbox import control


def test_up_status_down_reset(tmp_path, monkeypatch, sandbox_image_cache):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    home = tmp_path / "sandbox"
    runner = CliRunner()
    try:
        up = runner.invoke(cli, ["sandbox", "up"])
        assert up.exit_code == 0, up.output
        rest_url = re.search(r"REST v2:\s+(\S+)", up.output).group(1)
        key = re.search(r"API key:\s+(\S+)", up.output).group(1)
        assert re.search(r"GraphQL:\s+http://127\.0\.0\.1:\d+/graphql", up.output)
        assert re.search(r"HF hub:\s+http://127\.0\.0\.1:\d+", up.output)
        assert "diffusion-pipe: file://" in up.output and "joy-caption-batch: file://" in up.output
        pid = control.status(home).pid

        again = runner.invoke(cli, ["sandbox", "up"])  # idempotent: the same server
        assert again.exit_code == 0 and f"(pid {pid}," in again.output

        # a scenario given to a running sandbox replaces its faults and stand-in knobs
        flaky = Path(control.__file__).parent / "scenarios" / "flaky-cloud.toml"
        switched = runner.invoke(cli, ["sandbox", "up", "--scenario", str(flaky)])
        assert switched.exit_code == 0 and f"(pid {pid}," in switched.output
        admin = control.Admin(control.status(home))
        assert [f["kind"] for f in admin.faults()] == ["rate_limit", "create_500_after_create", "no_capacity",
                                                      "ssh_drop", "preempt"]
        knobs = json.loads((home / "standin-scenario.json").read_text())
        assert knobs["captioner"]["fail_images"] == ["*_bad.*"] and knobs["trainer"]["seconds_per_step"] == 0.1
        admin.set_scenario(None)
        assert admin.faults() == []

        created = httpx.post(rest_url + "/pods", headers={"Authorization": f"Bearer {key}"},
                             json={"name": "cli-pod", "image": "img", "gpu": {"id": "NVIDIA A40"}})
        assert created.status_code == 201
        status = runner.invoke(cli, ["sandbox", "status"])
        assert status.exit_code == 0 and "pods: 1 live" in status.output and "cli-pod" in status.output

        down = runner.invoke(cli, ["sandbox", "down"])
        assert down.exit_code == 0 and "sandbox stopped" in down.output
        assert runner.invoke(cli, ["sandbox", "status"]).exit_code == 1
        assert "was not running" in runner.invoke(cli, ["sandbox", "down"]).output

        assert runner.invoke(cli, ["sandbox", "reset", "--yes"]).exit_code == 0
        assert not home.exists()
    finally:
        control.stop(home)


def test_up_with_a_bad_scenario_is_one_line_error(tmp_path):
    bad = tmp_path / "scenario.toml"
    bad.write_text('[timing]\nprovision_s = "slow"\n')
    env = {"PISTACHIO_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "pistachio_infra.cli", "sandbox", "up", "--scenario", str(bad)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 3  # bad configuration (errors.EXIT_CONFIG)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "timing.provision_s" in result.stderr
    assert not (tmp_path / "sandbox" / "info.json").exists()


def test_resolve_cloud_finds_the_sandbox(sandbox):
    from pistachio_infra.endpoints import resolve_cloud

    cloud = resolve_cloud()  # PISTACHIO_SANDBOX=1 and PISTACHIO_HOME point at the fixture's sandbox
    assert cloud.sandbox and (cloud.rest_url, cloud.api_key) == (sandbox.rest_url, sandbox.api_key)
    assert cloud.hf_endpoint == sandbox.hf_endpoint
    assert set(cloud.repo_overrides) == {"diffusion-pipe", "joy-caption-batch", "ComfyUI"}
    assert control.ensure_running().pid == sandbox.pid
