"""Fast tests of the pipeline's parts: demo dataset, training-log parsing, GPU class choice, job lock, LoRA naming
and installing (locally, and over SFTP to a real sandbox pod)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pistachio_infra.comfy.loras import install_lora
from pistachio_infra.errors import ConfigError
from pistachio_infra.pipeline.training import Progress


def test_demo_dataset_is_deterministic_and_passes_preflight(tmp_path):
    from pistachio_infra.dataset.demo import generate_dataset
    from pistachio_infra.dataset.scan import preflight

    a = generate_dataset(tmp_path / "a", 6, seed=3)
    b = generate_dataset(tmp_path / "b", 6, seed=3)
    c = generate_dataset(tmp_path / "c", 6, seed=4)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]
    report = preflight(tmp_path / "a", "pip7")
    assert len(report.usable) == 6 and not [w for w in report.warnings if "small" in w or "identical" in w]


def test_training_log_is_parsed_across_chunk_boundaries():
    progress = Progress(total=40)
    log = (
        "Global batch size = 8\nStarted new epoch: 1\nwandb: 🚀 View run pip at: https://wandb.ai/me/p/runs/ab12\n"
        "steps: 1 loss: 0.1234 iter time (s): 0.050 samples/sec: 160.0\nSaving model to directory step4\n"
        "Started new epoch: 3\nsteps: 12 loss: nan iter time (s): 0.050\nTRAINING COMPLETE!\n"
    )
    for i in range(0, len(log), 7):  # arbitrary chunks, as they come off the pod
        progress.feed(log[i : i + 7])
    assert progress.step == 12 and progress.epoch == 3 and progress.complete
    assert progress.loss != progress.loss  # nan parsed as nan
    assert progress.saves == ["step4"] and progress.wandb_url == "https://wandb.ai/me/p/runs/ab12"
    resumed = Progress(total=40)
    resumed.feed("Resuming training from checkpoint. Resuming at epoch: 5, step: 17\n")
    assert (resumed.epoch, resumed.step, resumed.resumed_at) == (5, 16, 16)  # 16 steps done, 17 is next


def test_gpu_classes_auto_and_override():
    from pistachio_infra.catalog import gpu_class
    from pistachio_infra.config.project import Job
    from pistachio_infra.pipeline.driver import auto_classes, requested_classes

    auto = auto_classes()
    assert auto and all(gpu_class(n).tier >= 48 for n in auto)
    assert gpu_class(auto[0]).tier == 48
    job = Job(name="j", character="C", trigger="zxq7", dataset=Path("."), gpu=["a40", "a6000"])
    assert requested_classes(job, ()) == ("a40", "a6000")
    assert requested_classes(job, ("A6000",)) == ("a6000",)
    with pytest.raises(ConfigError, match="unknown GPU class"):
        requested_classes(job, ("b200x",))


def test_second_holder_of_a_job_lock_is_refused_with_the_pid(tmp_path, monkeypatch):
    from pistachio_infra.pipeline.driver import JobBusyError, job_lock

    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    with job_lock("pip"):
        with pytest.raises(JobBusyError, match=f"already running \\(pid {os.getpid()}\\)"), job_lock("pip"):
            pass
        with job_lock("other"):  # other jobs are not blocked
            pass
    with job_lock("pip"):  # released
        pass


def test_local_install_is_atomic_and_verified(tmp_path):
    lora = tmp_path / "Pip_pip7_step20.safetensors"
    lora.write_bytes(b"\x00" * 1000)
    done = install_lora(lora, str(tmp_path / "ComfyUI" / "models" / "loras"))
    dest = Path(done.location)
    assert dest.read_bytes() == lora.read_bytes() and not done.remote
    assert [p.name for p in dest.parent.iterdir()] == [lora.name]  # no .part left behind
    with pytest.raises(ConfigError, match="unknown scheme"):
        install_lora(lora, "ftp://host/loras")
    with pytest.raises(ConfigError, match="none is deployed"):
        install_lora(lora, "comfyui:///workspace/ComfyUI/models/loras")


def test_sftp_install_onto_a_pod(sandbox, sandbox_admin, tmp_path):
    from pistachio_infra.endpoints import resolve_cloud
    from pistachio_infra.pods import PodLifecycle, PodSpec
    from pistachio_infra.pods.sshkeys import public_key
    from pistachio_infra.runpod import connect
    from pistachio_infra.state import Store

    cloud = resolve_cloud()
    store = Store()
    lifecycle = PodLifecycle(connect(cloud), store, cloud)
    ready = lifecycle.acquire(PodSpec(purpose="comfyui", label="loras", gpu_classes=("a40",),
                                      public_key=public_key()))
    try:
        lora = tmp_path / "Pip_pip7_step8.safetensors"
        lora.write_bytes(os.urandom(4096))
        workspace = Path(next(p for p in sandbox_admin.pods() if p["id"] == ready.pod.id)["workspace"])
        target = f"sftp://root@{ready.host}:{ready.port}/workspace/ComfyUI/models/loras"
        done = install_lora(lora, target, store=store)
        assert done.remote and done.location.endswith("/workspace/ComfyUI/models/loras/Pip_pip7_step8.safetensors")
        remote_root = workspace if (workspace / "ComfyUI").exists() else Path("/workspace")
        assert (remote_root / "ComfyUI/models/loras" / lora.name).read_bytes() == lora.read_bytes()
    finally:
        lifecycle.terminate(ready.name, "test done")
        store.close()
