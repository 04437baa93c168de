"""The SSH login user comes from the API (REST v2 `ssh.direct.username`), rides on `Pod.ssh_user`, and is the user
every connection logs in as. The sandbox's sshd runs as the server's own user, so it answers with that user (root
in CI and on RunPod, the developer's own account otherwise)."""

from __future__ import annotations

import os
import pwd
import time
from contextlib import closing

import httpx

from pistachio_infra.endpoints import resolve_cloud
from pistachio_infra.pods.lifecycle import ReadyPod
from pistachio_infra.pods.session import connect_remote
from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.runpod import connect
from pistachio_infra.runpod.port import PodRequest
from pistachio_infra.runpod.rest_v2 import RestV2Api
from pistachio_infra.state import Store

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


def test_the_sandbox_reports_its_own_user_and_remote_logs_in_as_it(sandbox):
    me = pwd.getpwuid(os.geteuid()).pw_name
    cloud = resolve_cloud()
    api = connect(cloud)
    created = api.create_pod(PodRequest(name="who", image=IMAGE, gpu_type_id="NVIDIA A40",
                                        env={"PUBLIC_KEY": public_key()}))
    deadline = time.monotonic() + 30
    while not (pod := api.get_pod(created.id)).ssh_ready:
        assert time.monotonic() < deadline, pod
        time.sleep(0.05)

    raw = httpx.get(f"{cloud.rest_url}/pods/{pod.id}", headers={"Authorization": f"Bearer {cloud.api_key}"}).json()
    assert raw["ssh"]["direct"]["username"] == me
    assert raw["ssh"]["direct"]["command"].startswith(f"ssh {me}@")
    assert pod.ssh_user == me

    with closing(Store()) as store, connect_remote(store, ReadyPod("who", pod, None, [], 0, 0), timeout=30) as remote:
        assert remote.user == me
        assert remote.run("id -un").stdout.strip() == me
    api.terminate_pod(pod.id)


def test_the_rest_adapter_carries_the_answered_username_and_defaults_to_root():
    def answer(request: httpx.Request) -> httpx.Response:
        pod_id = request.url.path.rsplit("/", 1)[1]
        direct = {"host": "203.0.113.7", "port": 40022, "username": "ubuntu"} if pod_id == "named" else \
                 {"host": "203.0.113.7", "port": 40022}
        return httpx.Response(200, json={"id": pod_id, "name": pod_id, "status": "RUNNING",
                                         "ssh": {"direct": direct}})

    with RestV2Api("https://rest.example/v2", "key", transport=httpx.MockTransport(answer)) as api:
        assert api.get_pod("named").ssh_user == "ubuntu"
        assert api.get_pod("unnamed").ssh_user == "root"
