"""lock → rebuild → check against the sandbox, upstream drift on an unlocked pod, `--upgrade` with its diff, the
environment a job records, and a model file whose bytes break the lock."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
from helpers import CLI
from huggingface_hub import HfApi

from pistachio_infra.catalog import RepoPin, sources
from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.lock.drift import compare_locks
from pistachio_infra.lock.lockfile import load_lock
from pistachio_infra.lock.rebuild import ModelHashMismatchError, bootstrap_from_lock, check_pod, current_lock_summary
from pistachio_infra.pods import PodSpec
from pistachio_infra.pods.bootstrap import DEFAULT_MODELS
from pistachio_infra.pods.session import pod_session
from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.pods.watchdog import WatchdogPolicy
from pistachio_infra.sandbox.hf import HubStore, publish_file
from pistachio_infra.sandbox.standins import add_commit

from .conftest import cli, connect_pod, live_pods

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"

WAN = "Wan-AI/Wan2.1-T2V-14B"
POLICY = WatchdogPolicy(max_runtime_s=900, idle_s=120, heartbeat_s=1)


def _rebuilt_pod(out: str) -> str:
    return re.search(r"rebuilt (pistachio-rebuild-\S+) \(", out).group(1)


def test_lock_rebuild_check_then_upstream_changes_show_as_drift(sandbox, sandbox_admin, tmp_path):
    lock_file = tmp_path / "pistachio.lock"
    made = cli("lock", "--sandbox", "--out", str(lock_file))
    assert made.returncode == 0, made.stdout + made.stderr
    assert live_pods(sandbox_admin) == []  # the pod that was read is gone
    locked = load_lock(lock_file)
    cloud = resolve_cloud()
    assert set(locked.repos) == {"diffusion-pipe", "joy-caption-batch"}  # training pods only
    assert all(r.commit == cloud.repo_overrides[n].commit for n, r in locked.repos.items())
    assert locked.repos["diffusion-pipe"].submodules.keys() == {"submodules/ComfyUI"}
    assert {"numpy", "safetensors", "huggingface-hub"} <= set(locked.python["system"].packages)
    # flash-attn (models/wan/attention.py@8f83dbf) is in the pod's package set: the bootstrap installed the pinned
    # wheel from the sandbox's package index, and the lock records the pin it came from
    assert locked.python["system"].packages["flash-attn"] == "2.8.3+sandbox"
    assert locked.wheels["flash-attn"].sha256 == cloud.wheel_overrides["flash-attn"].sha256
    assert locked.models["wan21-t2v-14b"].files[0].revision == HfApi(endpoint=cloud.hf_endpoint).model_info(WAN).sha

    unasked = subprocess.run([CLI, "rebuild", "--sandbox", "--lock", str(lock_file)], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=240)
    assert unasked.returncode == 2 and "no terminal to ask" in unasked.stderr, unasked.stdout + unasked.stderr
    assert "rebuild " in unasked.stdout + unasked.stderr and live_pods(sandbox_admin) == []  # the plan, no pod

    rebuilt = cli("rebuild", "--sandbox", "--lock", str(lock_file))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    pod = _rebuilt_pod(rebuilt.stdout)
    check = cli("lock", "--check", pod, "--out", str(lock_file))
    assert check.returncode == 0 and f"no drift: pod {pod} matches" in check.stdout, check.stdout + check.stderr

    # what a job records: its environment, as a lock equal to the one it was rebuilt from
    with connect_pod(pod) as remote:
        summary = current_lock_summary(remote, cloud, models=DEFAULT_MODELS, gpu_class="a40",
                                       pod_image=sources().image.name, project_lock=lock_file,
                                       save_to=tmp_path / "run" / "pistachio.lock")
    assert summary["project_lock"]["clean"] and summary["project_lock"]["digest"] == locked.digest()
    assert summary["digest"] == locked.digest(), compare_locks(locked, load_lock(summary["lock_file"])).drifted
    assert summary["repos"]["diffusion-pipe"] == locked.repos["diffusion-pipe"].commit
    json.dumps(summary)  # it goes into the state store and the report as JSON

    # upstream moves: a new commit on the stand-in repo, a new revision of a model file
    new_commit = add_commit(sandbox.home / "git" / "diffusion-pipe.git", "upstream work", {"NEWS.md": "news\n"})
    new_config = b'{"_class_name": "WanModel", "dim": 5120, "num_layers": 40, "model_type": "t2v"}\n'
    new_revision = publish_file(sandbox.home / "hf", WAN, "config.json", new_config)
    still = cli("lock", "--check", pod, "--out", str(lock_file))
    assert still.returncode == 0, still.stdout  # the rebuilt pod is what the lock says, whatever upstream does

    # a pod set up without the lock follows upstream: the repo's newest commit and the hub's main
    heads = dataclasses.replace(cloud, repo_overrides={
        **cloud.repo_overrides,
        "diffusion-pipe": RepoPin(cloud.repo_overrides["diffusion-pipe"].url, new_commit),
    })
    spec = PodSpec(purpose="up", label="unlocked", gpu_classes=("a6000", "a40"), public_key=public_key())
    with pod_session(spec, policy=POLICY, models=DEFAULT_MODELS, cloud=heads) as unlocked:
        report = check_pod(unlocked.remote, cloud, locked, pod_image=unlocked.pod.image)
        drifted = {(i.component, i.name): i for i in report.drifted}
        assert set(drifted) == {("repo", "diffusion-pipe"), ("model", f"wan21-t2v-14b: {WAN}/config.json")}
        assert drifted[("repo", "diffusion-pipe")].actual == new_commit
        assert new_revision[:12] in drifted[("model", f"wan21-t2v-14b: {WAN}/config.json")].actual
        same = [i for i in report.items if i.component == "model" and "same bytes" in i.note]
        assert len(same) == 12 and all(i.status == "ok" for i in same)  # the other files did not change

        shown = cli("lock", "--check", unlocked.name, "--out", str(lock_file))
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "diffusion-pipe" in shown.stdout and new_commit in shown.stdout and "config.json" in shown.stdout
        assert "drift: 2 item(s)" in shown.stdout
        # issue 15: the same report for scripts, against its schema, with the same exit code
        as_json = cli("lock", "--check", unlocked.name, "--out", str(lock_file), "--json")
        assert as_json.returncode == 1, as_json.stdout + as_json.stderr
        doc = json.loads(as_json.stdout)
        jsonschema.validate(doc, json.loads((SCHEMAS / "lock-check.json").read_text()))
        in_json = {(i["component"], i["name"]) for i in doc["items"] if i["status"] in ("changed", "missing", "extra")}
        assert not doc["clean"] and in_json == set(drifted)

        # updating is explicit: the diff first, nothing written without a yes
        before = lock_file.read_text()
        declined = cli("lock", "--sandbox", "--upgrade", "models", "--out", str(lock_file), input="n\n")
        assert declined.returncode == 0 and "nothing written" in declined.stdout, declined.stderr
        assert "config.json" in declined.stdout and "new revision, same bytes" in declined.stdout
        assert lock_file.read_text() == before
        upgraded = cli("lock", "--sandbox", "--upgrade", "diffusion-pipe", "--from-pod", unlocked.name,
                       "--out", str(lock_file), input="y\n")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert new_commit[:12] in upgraded.stdout and "wrote" in upgraded.stdout
        assert load_lock(lock_file).repos["diffusion-pipe"].commit == new_commit
        after = check_pod(unlocked.remote, cloud, load_lock(lock_file), pod_image=unlocked.pod.image)
        assert [(i.component, i.name) for i in after.drifted] == [("model", f"wan21-t2v-14b: {WAN}/config.json")]

    assert cli("down", pod).returncode == 0
    assert live_pods(sandbox_admin) == []


def test_rebuild_stops_when_a_model_file_does_not_match_the_locked_sha256(sandbox, sandbox_admin, tmp_path):
    lock_file = tmp_path / "pistachio.lock"
    made = cli("lock", "--sandbox", "--out", str(lock_file), "--model", "wan21-t2v-14b")
    assert made.returncode == 0, made.stdout + made.stderr
    locked = load_lock(lock_file)
    config = next(f for f in locked.models["wan21-t2v-14b"].files if f.path == "config.json")
    # the hub now serves other bytes for the very revision the lock pins (a rewritten or corrupted mirror)
    blob = HubStore(sandbox.home / "hf").root / "blobs" / config.sha256
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"5120", b"5121"))
    assert len(blob.read_bytes()) == config.size

    failed = cli("rebuild", "--sandbox", "--lock", str(lock_file), "--gpu", "a40")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: model file wan21-t2v-14b: Wan-AI/Wan2.1-T2V-14B/config.json does not match")
    assert config.sha256[:16] in line and "rebuild stopped" in line and "--upgrade wan21-t2v-14b" in line
    assert live_pods(sandbox_admin) == []  # the failed rebuild's pod was terminated

    # on a pod that stays (a network volume would keep files too), the bad file is deleted, the good ones stay
    spec = PodSpec(purpose="rebuild", label="api", gpu_classes=("a40",), public_key=public_key())
    with pod_session(spec, policy=POLICY, models=None) as session:
        with pytest.raises(ModelHashMismatchError):
            bootstrap_from_lock(session.remote, session.cloud, locked)
        ws = session.remote.workspace
        assert session.remote.run(f"test -e {ws}/{config.dest}", check=False).exit_code == 1
        session.remote.run(f"test -s {ws}/models/Wan2.1-T2V-14B/Wan2.1_VAE.pth")
    assert live_pods(sandbox_admin) == []
