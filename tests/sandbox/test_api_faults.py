"""Every fault the sandbox injects, shown happening: from a scenario file or armed at run time (Admin.inject)."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest

from pistachio_infra.errors import ConfigError, PistachioError
from pistachio_infra.sandbox.podhost import pod_user

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


def rest(info, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, info.rest_url + path, headers={"Authorization": f"Bearer {info.api_key}"},
                         timeout=30, **kw)


def create(info, name: str = "pod", gpu: str = "NVIDIA A40", **extra) -> httpx.Response:
    body = {"name": name, "image": IMAGE, "gpu": {"id": gpu}, "ports": ["22/tcp"], **extra}
    return rest(info, "POST", "/pods", json=body)


def status_after(info, pod_id: str, seconds: float) -> dict:
    time.sleep(seconds)
    return rest(info, "GET", f"/pods/{pod_id}").json()


def wait_status(info, pod_id: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pod = rest(info, "GET", f"/pods/{pod_id}").json()
        if pod["status"] == status:
            return pod
        assert time.monotonic() < deadline, pod
        time.sleep(0.05)


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def ssh_cmd(key, port: int, command: str) -> list[str]:
    return ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            f"{pod_user()}@127.0.0.1", command]


def test_rate_limit_burst(sandbox, sandbox_admin):
    sandbox_admin.inject("rate_limit", count=2, retry_after=3, api="rest", path="/v2/pods")
    for _ in range(2):
        resp = rest(sandbox, "GET", "/pods")
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "3"
        assert resp.json()["status"] == 429 and "RateLimit" in resp.headers
    assert rest(sandbox, "GET", "/catalog/gpus").status_code == 200  # another path is not affected
    assert rest(sandbox, "GET", "/pods").status_code == 200

    sandbox_admin.inject("rate_limit", count=1, api="graphql")
    resp = httpx.post(sandbox.graphql_base + "/graphql", json={"query": "query { myself { id } }"},
                      headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert resp.status_code == 429 and "errors" not in resp.json() and resp.headers["Retry-After"] == "1"


def test_quota_from_scenario_answers_429_with_retry_after(sandbox_factory):
    info = sandbox_factory({"rate_limit": {"per_minute": 3}})
    seen = [rest(info, "GET", "/catalog/datacenters") for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r.headers["RateLimit"].split(";")[1] for r in seen[:3]] == ["r=2", "r=1", "r=0"]
    assert seen[0].headers["RateLimit-Policy"].startswith('"minute";q=3;w=60')
    assert 55 <= int(seen[3].headers["Retry-After"]) <= 60
    assert "minute" in seen[3].json()["detail"]


def test_server_error_burst(sandbox, sandbox_admin):
    sandbox_admin.inject("server_error", count=2, status=503, method="GET")
    assert [rest(sandbox, "GET", "/pods").status_code for _ in range(3)] == [503, 503, 200]
    sandbox_admin.inject("server_error", count=1, api="graphql", operation="gpuTypes")
    resp = httpx.post(sandbox.graphql_base + "/graphql", json={"query": "query { gpuTypes { id } }"},
                      headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert resp.status_code == 500 and resp.json()["errors"][0]["message"].startswith("Something went wrong")


def test_create_answers_500_but_the_pod_exists(sandbox, sandbox_admin):
    sandbox_admin.inject("create_500_after_create", count=1)
    resp = create(sandbox, name="ghost")
    assert resp.status_code == 500
    pods = rest(sandbox, "GET", "/pods").json()["pods"]
    assert [p["name"] for p in pods] == ["ghost"]
    assert sandbox_admin.billing()[pods[0]["id"]] > 0  # and it bills
    assert create(sandbox, name="second").status_code == 201


def test_no_capacity_for_a_gpu_in_a_data_center(sandbox, sandbox_admin):
    sandbox_admin.inject("no_capacity", gpu="NVIDIA A40", data_center="EU-RO-1")
    refused = create(sandbox, dataCenterIds=["EU-RO-1"])
    assert refused.status_code == 400 and "no longer any instances available" in refused.json()["detail"]
    placed = create(sandbox, dataCenterIds=["EU-RO-1", "US-TX-3"])
    assert placed.status_code == 201 and placed.json()["dataCenterId"] == "US-TX-3"
    catalog = rest(sandbox, "GET", "/catalog/gpus/NVIDIA%20A40?include=AVAILABILITY&product=POD").json()
    assert "EU-RO-1" not in [d["id"] for d in catalog["dataCenters"]]
    sandbox_admin.clear_faults()
    assert create(sandbox, dataCenterIds=["EU-RO-1"]).status_code == 201


def test_no_capacity_the_catalog_does_not_show(sandbox, sandbox_admin):
    sandbox_admin.inject("no_capacity", gpu="NVIDIA L40S", count=1, visible=False)
    catalog = rest(sandbox, "GET", "/catalog/gpus/NVIDIA%20L40S?include=AVAILABILITY&product=POD").json()
    assert catalog["availability"] != "NONE"
    assert create(sandbox, gpu="NVIDIA L40S").status_code == 400
    assert create(sandbox, gpu="NVIDIA L40S").status_code == 201  # count=1: the next one places


def test_stuck_in_provisioning(sandbox, sandbox_admin):
    sandbox_admin.inject("stuck_provisioning")
    stuck = create(sandbox, name="stuck").json()
    normal = create(sandbox, name="normal").json()
    wait_status(sandbox, normal["id"], "RUNNING")
    pod = rest(sandbox, "GET", f"/pods/{stuck['id']}").json()
    assert pod["status"] == "PROVISIONING" and pod["runtime"] is None
    assert sandbox_admin.pod_processes(stuck["id"]) == []
    assert rest(sandbox, "POST", f"/pods/{stuck['id']}/action", json={"action": "terminate"}).status_code == 204


def test_slow_provisioning_from_scenario(sandbox_factory):
    info = sandbox_factory({"faults": [{"kind": "slow_provisioning", "delay": 2.5}]})
    started = time.monotonic()
    slow = create(info).json()
    normal = create(info).json()  # count=1: only the first pod is slow
    wait_status(info, slow["id"], "RUNNING")
    assert time.monotonic() - started >= 2.5
    from pistachio_infra.sandbox.control import Admin

    raw = {p["id"]: p for p in Admin(info).pods()}
    assert raw[slow["id"]]["provision_until"] - raw[slow["id"]]["created_at"] == pytest.approx(2.5)
    assert raw[normal["id"]]["provision_until"] - raw[normal["id"]]["created_at"] == pytest.approx(0.4)


def test_sshd_never_ready(sandbox, sandbox_admin):
    sandbox_admin.inject("ssh_never_ready", mode="refused")
    refused = create(sandbox).json()
    running = wait_status(sandbox, refused["id"], "RUNNING")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", running["ssh"]["direct"]["port"]), timeout=5)

    sandbox_admin.inject("ssh_never_ready", mode="starting")
    starting = create(sandbox).json()
    wait_status(sandbox, starting["id"], "STARTING")
    pod = status_after(sandbox, starting["id"], 1.5)
    assert pod["status"] == "STARTING" and pod["runtime"] is None and pod["ssh"]["direct"] is None


def test_ssh_drop_cuts_sessions_but_not_detached_jobs(sandbox, sandbox_admin, ssh_key):
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    pod = create(sandbox, env={"PUBLIC_KEY": pub}).json()
    port = wait_status(sandbox, pod["id"], "RUNNING")["ssh"]["direct"]["port"]
    job = subprocess.run(ssh_cmd(ssh_key, port, "nohup setsid sleep 300 >/dev/null 2>&1 & echo $!"),
                         capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stderr
    session = subprocess.Popen(ssh_cmd(ssh_key, port, "echo started; sleep 60; echo finished"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert session.stdout.readline().strip() == "started"
    before = set(sandbox_admin.pod_processes(pod["id"]))
    sandbox_admin.drop_ssh(pod["id"])
    out, _ = session.communicate(timeout=20)
    assert session.returncode != 0 and "finished" not in out
    after = set(sandbox_admin.pod_processes(pod["id"]))
    assert after and after < before  # sshd and the detached sleep survive
    again = subprocess.run(ssh_cmd(ssh_key, port, "pgrep -x sleep | wc -l"), capture_output=True, text=True,
                           timeout=30)
    assert again.returncode == 0 and int(again.stdout) >= 1


def test_ssh_drop_from_scenario(sandbox_factory, ssh_key):
    # 10 s after the pod runs: enough for an SSH login on a loaded machine to come first, so the drop cuts it
    info = sandbox_factory({"faults": [{"kind": "ssh_drop", "after": 10.0}]})
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    pod = create(info, env={"PUBLIC_KEY": pub}).json()
    port = wait_status(info, pod["id"], "RUNNING")["ssh"]["direct"]["port"]
    started = time.monotonic()
    cut = subprocess.run(ssh_cmd(ssh_key, port, "sleep 60; echo finished"), capture_output=True, text=True,
                         timeout=90)
    assert cut.returncode != 0 and "finished" not in cut.stdout and time.monotonic() - started < 55


def test_interruptible_pod_preempted_from_scenario(sandbox_factory):
    info = sandbox_factory({"faults": [{"kind": "preempt", "after": 0.5}]})
    query = ('mutation { podRentInterruptable(input: { bidPerGpu: 0.3, name: "spot", imageName: "img", '
             'gpuTypeId: "NVIDIA A40", ports: "22/tcp" }) { id } }')
    resp = httpx.post(info.graphql_base + "/graphql", json={"query": query},
                      headers={"Authorization": f"Bearer {info.api_key}"})
    pod_id = resp.json()["data"]["podRentInterruptable"]["id"]
    exited = wait_status(info, pod_id, "EXITED")
    assert exited["cost"] == 0 and exited["actions"] == ["start", "terminate"]
    from pistachio_infra.sandbox.control import Admin

    admin = Admin(info)
    assert admin.pod_processes(pod_id) == []
    raw = next(p for p in admin.pods() if p["id"] == pod_id)
    assert raw["started_at"] and "Preempted" in raw["last_status_change"]  # it ran, then was preempted


def test_resume_without_a_free_gpu(sandbox, sandbox_admin):
    pod = create(sandbox).json()
    wait_status(sandbox, pod["id"], "RUNNING")
    assert rest(sandbox, "POST", f"/pods/{pod['id']}/action", json={"action": "stop"}).status_code == 200
    sandbox_admin.inject("resume_no_gpu")
    refused = rest(sandbox, "POST", f"/pods/{pod['id']}/action", json={"action": "start"})
    assert refused.status_code == 400 and "not enough free GPUs on the host machine" in refused.json()["detail"]
    assert rest(sandbox, "POST", f"/pods/{pod['id']}/action", json={"action": "start"}).status_code == 200


def test_insufficient_balance_and_forbidden(sandbox, sandbox_admin):
    sandbox_admin.inject("insufficient_balance")
    assert create(sandbox).status_code == 402
    sandbox_admin.inject("forbidden")
    assert create(sandbox).status_code == 403
    assert rest(sandbox, "GET", "/pods").json()["pods"] == []
    assert create(sandbox).status_code == 201


def test_balance_needs_an_hour_of_the_pod(sandbox_factory):
    info = sandbox_factory({"account": {"balance_usd": 1.0}})
    refused = create(info, gpu="NVIDIA H200")
    assert refused.status_code == 402 and "balance" in refused.json()["detail"]
    assert create(info, gpu="NVIDIA A40").status_code == 201  # $0.40/h fits in $1


def test_faults_can_be_listed_and_bad_ones_are_refused(sandbox, sandbox_admin, tmp_path):
    sandbox_admin.inject("no_capacity", gpu="NVIDIA A40")
    assert [(f["kind"], f["gpu"], f["count"]) for f in sandbox_admin.faults()] == [("no_capacity", "NVIDIA A40",
                                                                                      None)]
    with pytest.raises(PistachioError, match="unknown fault kind"):
        sandbox_admin.inject("meteor")
    with pytest.raises(PistachioError, match="takes"):
        sandbox_admin.inject("rate_limit", colour="red")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[faults]]\nkind = "rate_limit"\ncount = 0\n')
    from pistachio_infra.sandbox import control

    with pytest.raises(ConfigError, match="count must be a positive integer"):
        control.start(sandbox.home, bad)
