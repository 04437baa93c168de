"""The real runpod SDK 1.12 (GraphQL) against the sandbox: the calls the tool's GraphQL adapter relies on."""

from __future__ import annotations

import socket
import time

import pytest


@pytest.fixture
def runpod(sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # never read a developer's ~/.runpod/config.toml
    monkeypatch.setenv("RUNPOD_API_BASE_URL", sandbox.graphql_base)
    import runpod

    assert runpod.__version__.startswith("1.12.")
    monkeypatch.setattr(runpod, "api_key", sandbox.api_key)
    return runpod


def wait_pod(runpod, pod_id: str, done, timeout: float = 30) -> dict | None:
    deadline = time.monotonic() + timeout
    while True:
        pod = runpod.get_pod(pod_id)
        if done(pod):
            return pod
        assert time.monotonic() < deadline, f"pod {pod_id}: {pod}"
        time.sleep(0.05)


def ssh_port(pod: dict | None) -> int | None:
    if not pod or not pod.get("runtime"):
        return None
    return next((p["publicPort"] for p in pod["runtime"]["ports"] if p["privatePort"] == 22), None)


def test_gpus(runpod):
    gpus = runpod.get_gpus()
    by_id = {g["id"]: g for g in gpus}
    assert by_id["NVIDIA A40"] == {"id": "NVIDIA A40", "displayName": "A40", "memoryInGb": 48}
    assert by_id["NVIDIA H200"]["memoryInGb"] == 141
    gpu = runpod.get_gpu("NVIDIA RTX A6000", 2)
    assert gpu["id"] == "NVIDIA RTX A6000" and gpu["securePrice"] == 0.49 and gpu["maxGpuCount"] == 8
    assert gpu["lowestPrice"] == {"minimumBidPrice": 0.25, "uninterruptablePrice": 0.33}
    with pytest.raises(ValueError, match="No GPU found"):
        runpod.get_gpu("NVIDIA Z9000")


def test_pod_lifecycle(runpod, sandbox_admin):
    created = runpod.create_pod(
        "sdk-pod", "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404", "NVIDIA A40",
        ports="22/tcp,8888/http", volume_mount_path="/workspace", volume_in_gb=20, env={"STAGE": "one"},
    )
    pod_id = created["id"]
    assert created["env"] == ["STAGE=one"] and created["machine"]["podHostId"].startswith(pod_id + "-")

    first = runpod.get_pod(pod_id)
    assert first["desiredStatus"] == "RUNNING" and first["ports"] == "22/tcp,8888/http"
    assert first["podType"] == "RESERVED" and first["costPerHr"] == pytest.approx(0.40)
    assert first["machine"] == {"gpuDisplayName": "A40"} and first["volumeInGb"] == 20

    pod = wait_pod(runpod, pod_id, lambda p: ssh_port(p) is not None)
    public = next(p for p in pod["runtime"]["ports"] if p["privatePort"] == 22)
    assert public == {"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22, "publicPort": public["publicPort"],
                      "type": "tcp"}
    with socket.create_connection(("127.0.0.1", public["publicPort"]), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")
    assert [p["id"] for p in runpod.get_pods()] == [pod_id]

    from runpod.cli.utils.rp_info import get_pod_ssh_ip_port

    assert get_pod_ssh_ip_port(pod_id, timeout=5) == ("127.0.0.1", public["publicPort"])

    stopped = runpod.stop_pod(pod_id)
    assert stopped == {"id": pod_id, "desiredStatus": "EXITED"}
    assert runpod.get_pod(pod_id)["runtime"] is None
    assert sandbox_admin.pod_processes(pod_id) == []

    resumed = runpod.resume_pod(pod_id, 1)
    assert resumed["desiredStatus"] == "RUNNING"
    wait_pod(runpod, pod_id, lambda p: ssh_port(p) is not None)

    assert runpod.terminate_pod(pod_id) is None
    assert runpod.get_pod(pod_id) is None
    assert runpod.get_pods() == []
    assert sandbox_admin.pod_processes(pod_id) == []


def test_network_volume_placement_through_get_user(runpod, sandbox):
    from runpod.api.graphql import run_graphql_query

    made = run_graphql_query('mutation { createNetworkVolume(input: {name: "cache", size: 20, '
                             'dataCenterId: "CA-MTL-1"}) { id name size dataCenterId } }')
    vol = made["data"]["createNetworkVolume"]
    assert runpod.get_user()["networkVolumes"] == [vol]
    # the SDK looks the volume's data center up with get_user() and sends it as dataCenterId
    pod = runpod.create_pod("vol-pod", "img", "NVIDIA L40S", network_volume_id=vol["id"],
                            volume_mount_path="/workspace", ports="22/tcp")
    assert runpod.get_pod(pod["id"])["volumeMountPath"] == "/workspace"
    raw = run_graphql_query(f'query {{ pod(input: {{podId: "{pod["id"]}"}}) {{ networkVolumeId '
                            "machine { dataCenterId } } }")
    assert raw["data"]["pod"] == {"networkVolumeId": vol["id"], "machine": {"dataCenterId": "CA-MTL-1"}}
    runpod.terminate_pod(pod["id"])


def test_errors(runpod, sandbox_admin):
    from runpod.error import AuthenticationError, QueryError

    sandbox_admin.inject("no_capacity", gpu="NVIDIA A40")
    with pytest.raises(QueryError, match="There are no longer any instances available with the requested "
                                         r"specifications\. Please refresh and try again\."):
        runpod.create_pod("nope", "img", "NVIDIA A40")
    assert runpod.get_pods() == []
    with pytest.raises(AuthenticationError):
        runpod.get_pods(api_key="rpa_NOT_A_KEY")
    with pytest.raises(QueryError, match="not found"):
        runpod.terminate_pod("nosuchpod00000")
