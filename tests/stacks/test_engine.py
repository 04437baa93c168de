"""The real Pulumi engine: `env up` → a resource deleted behind Pulumi's back → `env refresh` sees it →
`env destroy` leaves 0 resources, against the sandbox. Needs the Pulumi CLI (scripts/build_pulumi.sh builds it;
scripts/test.sh puts it on PATH; an official install works the same)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pistachio_infra.errors import MissingToolError
from pistachio_infra.stacks import outputs
from pistachio_infra.stacks.outputs import backend_dir, resource_count

CLI = str(Path(sys.executable).parent / "pistachio-infra")


def _cli_or_skip() -> None:
    from pistachio_infra.stacks.automation import pulumi_command

    try:
        pulumi_command()
    except MissingToolError as exc:
        pytest.skip(f"the Pulumi CLI is not available ({exc.cause}); run scripts/build_pulumi.sh")


def env(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([CLI, "env", *args], capture_output=True, text=True, env=dict(os.environ), timeout=240)
    assert proc.returncode == 0, f"env {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.pulumi
def test_up_drift_refresh_destroy(sandbox, api, where, public_key, monkeypatch):
    _cli_or_skip()
    _, gpu, _ = where
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)

    up = env("up", "--gpu", gpu, "--comfyui", "--volume-gb", "20")
    assert "generated one in" in up.stderr  # first run: a passphrase is made and the user is told where
    deployed = outputs()
    assert deployed is not None and deployed.stack == "sandbox"
    volume = api.get_volume(deployed.volume_id)
    assert volume is not None and volume.size_gb == 20 and volume.data_center_id == deployed.data_center_id
    assert api.get_template(deployed.template_id).image == deployed.image
    pod = api.get_pod(deployed.comfyui_pod_id)
    assert pod.network_volume_id == volume.id and pod.data_center_id == volume.data_center_id
    assert (pod.ssh_host, pod.ssh_port) == (deployed.comfyui_ssh_host, deployed.comfyui_ssh_port)
    assert json.loads(up.stdout)["volume_id"] == volume.id
    assert resource_count() == 3
    state = "".join(p.read_text() for p in backend_dir().rglob("*.json"))
    assert sandbox.api_key not in state  # credentials never reach the state

    again = env("preview")
    assert "preview: same: 4" in again.stdout  # pinned data center, nothing drifts on a second run

    api.terminate_pod(deployed.comfyui_pod_id)  # behind Pulumi's back
    refreshed = env("refresh")
    assert "delete: 1" in refreshed.stdout
    after = outputs()
    assert after is not None and after.volume_id == volume.id and after.comfyui_pod_id is None
    assert resource_count() == 2

    destroyed = env("destroy", "--yes")
    assert "0 resources left" in destroyed.stdout
    assert outputs() is None and resource_count() == 0
    assert api.get_volume(volume.id) is None and api.get_template(deployed.template_id) is None
    assert [p for p in api.list_pods() if p.status != "TERMINATED"] == []
