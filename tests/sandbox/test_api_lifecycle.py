"""Pods across the whole sandbox: terminate leaves nothing running, a restarted server keeps its pods, pod-scoped
keys reach only their own pod, and a network volume's files outlive the pods that mount it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from pistachio_infra.sandbox import control
from pistachio_infra.sandbox.podhost import pod_user

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


def rest(info, method: str, path: str, key: str | None = None, **kw) -> httpx.Response:
    return httpx.request(method, info.rest_url + path, timeout=30,
                         headers={"Authorization": f"Bearer {key or info.api_key}"}, **kw)


def wait_running(info, pod_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pod = rest(info, "GET", f"/pods/{pod_id}").json()
        if pod["status"] == "RUNNING":
            return pod
        assert time.monotonic() < deadline, pod
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def ssh(key, port: int, command: str) -> subprocess.CompletedProcess:
    cmd = ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
           "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
           f"{pod_user()}@127.0.0.1", command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def create(info, key_path, name: str = "pod", **extra) -> dict:
    body = {"name": name, "image": IMAGE, "gpu": {"id": "NVIDIA A40"}, "ports": ["22/tcp"],
            "env": {"PUBLIC_KEY": key_path.with_suffix(".pub").read_text().strip()}, **extra}
    resp = rest(info, "POST", "/pods", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_terminate_leaves_no_process_of_the_pod(sandbox, sandbox_admin, ssh_key):
    pod = create(sandbox, ssh_key)
    other = create(sandbox, ssh_key, name="bystander")
    port = wait_running(sandbox, pod["id"])["ssh"]["direct"]["port"]
    started = ssh(ssh_key, port, "nohup setsid sh -c 'sleep 300 & sleep 300' >/dev/null 2>&1 & "
                                 "(sleep 300 >/dev/null 2>&1 &) ; echo ok")
    assert started.stdout.strip() == "ok", started.stderr
    pids = sandbox_admin.pod_processes(pod["id"])
    assert len(pids) >= 4  # sshd + the detached sleeps
    workspace = Path(next(p for p in sandbox_admin.pods() if p["id"] == pod["id"])["workspace"])
    assert workspace.is_dir()

    assert rest(sandbox, "DELETE", f"/pods/{pod['id']}").status_code == 204
    assert [pid for pid in pids if alive(pid)] == []
    assert sandbox_admin.pod_processes(pod["id"]) == []
    assert not workspace.exists()  # a pod's own disk goes with it
    wait_running(sandbox, other["id"])
    assert sandbox_admin.pod_processes(other["id"])  # the other pod is untouched


def test_restarted_server_keeps_its_pods(sandbox, sandbox_admin, ssh_key):
    kept = create(sandbox, ssh_key, name="kept")
    revived = create(sandbox, ssh_key, name="revived")
    stopped = create(sandbox, ssh_key, name="stopped")
    kept_port = wait_running(sandbox, kept["id"])["ssh"]["direct"]["port"]
    wait_running(sandbox, revived["id"])
    wait_running(sandbox, stopped["id"])
    assert rest(sandbox, "POST", f"/pods/{stopped['id']}/action", json={"action": "stop"}).status_code == 200
    revived_pids = sandbox_admin.pod_processes(revived["id"])
    billed = sandbox_admin.billing()

    os.kill(sandbox.pid, signal.SIGKILL)  # a crash: no clean shutdown, pods keep running
    deadline = time.monotonic() + 10
    while alive(sandbox.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in revived_pids:  # ... except this one's sshd, which dies while the server is down
        os.kill(pid, signal.SIGKILL)

    again = control.start(sandbox.home)
    assert again.pid != sandbox.pid
    assert (again.rest_url, again.api_key) == (sandbox.rest_url, sandbox.api_key)  # same port and key
    pods = {p["name"]: p for p in rest(again, "GET", "/pods").json()["pods"]}
    assert set(pods) == {"kept", "revived", "stopped"}
    assert pods["kept"]["status"] == "RUNNING" and pods["kept"]["ssh"]["direct"]["port"] == kept_port
    assert ssh(ssh_key, kept_port, "echo $RUNPOD_POD_ID").stdout.strip() == kept["id"]
    assert pods["stopped"]["status"] == "EXITED"
    assert wait_running(again, revived["id"])["ssh"]["direct"]["port"]  # booted again, like after a host reboot
    admin = control.Admin(again)
    assert admin.billing()[kept["id"]] > billed[kept["id"]]
    assert admin.billing()[stopped["id"]] == pytest.approx(billed[stopped["id"]])


def test_pod_scoped_key_reaches_only_its_own_pod(sandbox, sandbox_admin, ssh_key):
    mine = create(sandbox, ssh_key, name="mine")
    other = create(sandbox, ssh_key, name="other")
    port = wait_running(sandbox, mine["id"])["ssh"]["direct"]["port"]
    key = ssh(ssh_key, port, "echo $RUNPOD_API_KEY").stdout.strip()  # as the pod sees it
    assert key.startswith("rpa_") and key != sandbox.api_key

    assert rest(sandbox, "GET", f"/pods/{mine['id']}", key=key).json()["id"] == mine["id"]
    denied = [
        rest(sandbox, "GET", f"/pods/{other['id']}", key=key),
        rest(sandbox, "GET", "/pods", key=key),
        rest(sandbox, "POST", f"/pods/{other['id']}/action", key=key, json={"action": "stop"}),
        rest(sandbox, "DELETE", f"/pods/{other['id']}", key=key),
        rest(sandbox, "PATCH", f"/pods/{mine['id']}", key=key, json={"name": "renamed"}),
        rest(sandbox, "POST", f"/pods/{mine['id']}/action", key=key, json={"action": "restart"}),
        rest(sandbox, "POST", "/pods", key=key, json={"name": "x", "image": IMAGE, "gpu": {"id": "NVIDIA A40"}}),
        rest(sandbox, "GET", "/network-volumes", key=key),
        rest(sandbox, "GET", "/account/ssh-keys", key=key),
    ]
    assert [r.status_code for r in denied] == [403] * len(denied)
    assert rest(sandbox, "POST", f"/pods/{mine['id']}/action", key=key, json={"action": "stop"}).status_code == 200
    assert rest(sandbox, "DELETE", f"/pods/{mine['id']}", key=key).status_code == 204
    assert rest(sandbox, "GET", f"/pods/{mine['id']}", key=key).status_code == 401  # the key died with its pod
    statuses = {p["id"]: p["status"] for p in sandbox_admin.pods()}
    assert statuses[mine["id"]] == "TERMINATED" and statuses[other["id"]] != "TERMINATED"


def test_network_volume_files_outlive_the_pod(sandbox, ssh_key):
    vol = rest(sandbox, "POST", "/network-volumes", json={"name": "cache", "size": 20, "dataCenter": "US-TX-3"})
    mount = {"network": [{"volumeId": vol.json()["id"], "path": "/workspace"}]}
    first = create(sandbox, ssh_key, name="writer", mounts=mount)
    port = wait_running(sandbox, first["id"])["ssh"]["direct"]["port"]
    wrote = ssh(ssh_key, port, 'echo "$RUNPOD_VOLUME_ID" > "$PISTACHIO_WORKSPACE/hello.txt" && echo done')
    assert wrote.stdout.strip() == "done", wrote.stderr
    assert rest(sandbox, "DELETE", f"/pods/{first['id']}").status_code == 204

    second = create(sandbox, ssh_key, name="reader", mounts=mount)
    assert second["dataCenterId"] == "US-TX-3"
    port = wait_running(sandbox, second["id"])["ssh"]["direct"]["port"]
    read = ssh(ssh_key, port, 'cat "$PISTACHIO_WORKSPACE/hello.txt"')
    assert read.stdout.strip() == vol.json()["id"], read.stderr


def test_stop_terminates_every_pod_and_reset_wipes_state(sandbox_factory, ssh_key, tmp_path):
    info = sandbox_factory()
    pod = create(info, ssh_key)
    wait_running(info, pod["id"])
    pids = control.Admin(info).pod_processes(pod["id"])
    control.stop(info.home)
    assert control.status(info.home) is None and not alive(info.pid)
    assert [p for p in pids if alive(p)] == []
    control.stop(info.home)  # nothing running is fine

    again = control.start(info.home)
    assert rest(again, "GET", "/pods").json()["pods"] == []  # stop terminated it for good
    assert [p["status"] for p in control.Admin(again).pods()] == ["TERMINATED"]
    control.reset(info.home)
    assert not info.home.exists()
