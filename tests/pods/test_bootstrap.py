"""Bootstrap: pinned checkouts, deps and model files; a second run does nothing; a second pod on the same network
volume downloads nothing; a damaged model file is fetched again; HF_TOKEN is never written on the pod."""

from __future__ import annotations

import dataclasses
import json
from contextlib import closing
from pathlib import Path

from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.pods import PodSpec
from pistachio_infra.pods.bootstrap import bootstrap, joycaption_python
from pistachio_infra.pods.session import pod_session
from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.pods.watchdog import WatchdogPolicy
from pistachio_infra.runpod import connect
from pistachio_infra.state import Store

from .conftest import live_pods

POLICY = WatchdogPolicy(max_runtime_s=900, idle_s=120, heartbeat_s=1)
MODELS = ("wan21-t2v-14b",)
TOKEN = "hf_pistachio_test_secret_4f2a"


def test_bootstrap_is_idempotent_and_a_second_pod_on_the_volume_downloads_nothing(sandbox, sandbox_admin):
    cloud = dataclasses.replace(resolve_cloud(), hf_token=TOKEN)
    api = connect(cloud)
    volume = api.create_volume("pst-models", 20, "US-TX-3")
    workspace = Path(sandbox.home) / "volumes" / volume.id
    with closing(Store()) as store:
        job_id = store.create_job("boot", cloud="sandbox", spec={})
        spec = PodSpec(purpose="job", label="boot", gpu_classes=("a6000", "a40"), public_key=public_key(),
                       job_id=job_id, network_volume_id=volume.id, network_volume_dc=volume.data_center_id)  # fmt: skip
        with pod_session(spec, policy=POLICY, models=MODELS, cloud=cloud, api=api, store=store) as first:
            report = first.bootstrap
            assert {s["step"]: s["status"] for s in report.steps}["models"] == "done"
            assert all(m["status"] == "done" for m in report.models) and len(report.models) == 13
            head = first.remote.run("git -C \"$PISTACHIO_WORKSPACE/diffusion-pipe\" rev-parse HEAD").stdout.strip()
            assert head == cloud.repo_overrides["diffusion-pipe"].commit
            first.remote.run(f"{joycaption_python(first.remote.workspace)} -c 'import huggingface_hub'")

            again = bootstrap(first.remote, cloud, models=MODELS)
            assert again.did_nothing, again.steps
            first_pod = first.pod.id
        events = [e for e in store.events(job_id) if e["kind"] == "bootstrap"]
        assert events and all(e["steps"] and e["seconds"] > 0 for e in events)  # timings recorded in the state

        manifest = json.loads((workspace / ".pistachio" / "models-manifest.json").read_text())
        hashes = [f["sha256"] for entry in manifest.values() for f in entry["files"].values()]
        assert len(manifest) == 13 and all(len(h) == 64 for h in hashes)
        shard = workspace / "models/Wan2.1-T2V-14B/diffusion_pytorch_model-00002-of-00006.safetensors"
        original = shard.read_bytes()

        with pod_session(spec, policy=POLICY, models=MODELS, cloud=cloud, api=api, store=store) as second:
            assert second.pod.id != first_pod
            steps = {s["step"]: s["status"] for s in second.bootstrap.steps}
            assert steps["models"] == "skipped" and steps["clone:diffusion-pipe"] == "skipped", steps
            assert {m["status"] for m in second.bootstrap.models} == {"skipped"}

            shard.write_bytes(original[:-10] + b"0123456789")  # damaged on the volume, same size
            repaired = bootstrap(second.remote, cloud, models=MODELS)
            fetched = [m["item"] for m in repaired.models if m["status"] == "done"]
            assert fetched == [f"file:{shard.relative_to(workspace)}"]
            assert shard.read_bytes() == original

    assert live_pods(sandbox_admin) == []
    leaked = [p for p in workspace.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []
