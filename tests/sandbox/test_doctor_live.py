"""`pistachio-infra doctor --live` against the sandbox: every live check passes for $0, nothing is rented, and a
refused key or an unknown data center is named with its fix."""

from __future__ import annotations

import os
import subprocess

from helpers import CLI

from pistachio_infra.commands.doctor_live import live_checks
from pistachio_infra.endpoints import resolve_cloud


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=dict(os.environ))


def test_doctor_live_checks_the_cloud_without_renting(sandbox, sandbox_admin, tmp_path):
    assert _cli("init", "--path", str(tmp_path / "pistachio.toml"), cwd=tmp_path).returncode == 0
    balance = sandbox_admin.balance()
    done = _cli("doctor", "--live", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in ("API key", "accepted by the sandbox", "GPU classes", "8 of 8 known", "data centers",
                 "price a6000", "/h, best stock", "nothing was rented"):
        assert line in out, line
    assert sandbox.api_key not in out
    assert sandbox_admin.pods() == [] and sandbox_admin.balance() == balance  # $0: nothing created or billed


def test_doctor_live_names_a_refused_key_and_an_unknown_data_center(sandbox, tmp_path):
    import dataclasses

    cloud = resolve_cloud()
    [refused] = live_checks(dataclasses.replace(cloud, api_key="rpa_WRONG"))
    assert refused.name == "API key" and not refused.ok and "refused" in refused.detail
    assert "API Keys" in refused.fix and "rpa_WRONG" not in refused.detail + refused.fix
    project = tmp_path / "pistachio.toml"
    project.write_text('[project]\nname = "t"\n\n[jobs.pip]\ncharacter = "Pip"\ntrigger = "pip7"\n'
                       'dataset = "images"\ndata_centers = ["EU-XX-9"]\n')
    checks = {c.name: c for c in live_checks(cloud, project)}
    assert not checks["data centers"].ok and "EU-XX-9" in checks["data centers"].detail
    assert "fix data_centers" in checks["data centers"].fix
