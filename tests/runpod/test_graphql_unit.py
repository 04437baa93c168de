"""Fast unit tests of the GraphQL adapter: the real runpod SDK 1.12 talking real HTTP to a scripted local server.

The server parses every query with graphql-core, so the tests see exactly what the SDK put on the wire.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from graphql import parse
from graphql.language import FieldNode, OperationDefinitionNode
from graphql.utilities import value_from_ast_untyped

from pistachio_infra.runpod.graphql import GraphQLApi
from pistachio_infra.runpod.port import (
    AuthError,
    NoCapacityError,
    PodRequest,
    PodStatus,
    Stock,
    TransientError,
    ValidationError,
)
from pistachio_infra.runpod.retry import RetryPolicy

KEY = "rpa_" + "GRAPHQLSECRET987654321"  # fake; split so secret scanners do not flag it

POD = {
    "id": "pod123abcdef45",
    "name": "pst-job-1-a1",
    "desiredStatus": "RUNNING",
    "podType": "RESERVED",
    "costPerHr": 0.49,
    "gpuCount": 1,
    "imageName": "img:1",
    "env": ["A=1", "B=x=y"],
    "containerDiskInGb": 50,
    "networkVolumeId": "vol1234567",
    "machine": {"gpuTypeId": "NVIDIA RTX A6000", "dataCenterId": "US-TX-3"},
    "runtime": {
        "uptimeInSeconds": 5,
        "ports": [
            {"ip": "100.65.0.1", "isIpPublic": False, "privatePort": 22, "publicPort": 1, "type": "tcp"},
            {"ip": "203.0.113.9", "isIpPublic": True, "privatePort": 22, "publicPort": 41022, "type": "tcp"},
        ],
    },
}


class Scripted(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        doc = parse(body["query"])  # the SDK's text must be valid GraphQL
        op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
        fields = [s for s in op.selection_set.selections if isinstance(s, FieldNode)]
        root = fields[0].name.value
        self.server.seen.append((root, fields, self.headers.get("Authorization")))
        answers = self.server.script.get(root) or [(200, {"data": {root: None}})]
        status, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class ScriptedServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Scripted)
        self.script: dict[str, list] = {}
        self.seen: list = []

    def roots(self) -> list[str]:
        return [root for root, _, _ in self.seen]


@pytest.fixture
def server():
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(server, sleeps, monkeypatch, tmp_path) -> GraphQLApi:
    monkeypatch.setenv("HOME", str(tmp_path))  # no developer ~/.runpod/config.toml
    monkeypatch.delenv("RUNPOD_API_BASE_URL", raising=False)
    policy = RetryPolicy(max_attempts=4, backoff_initial_s=0.01, lookup_attempts=2, sleep=sleeps.append)
    return GraphQLApi(f"http://127.0.0.1:{server.server_port}", KEY, policy=policy)


def data(root: str, value) -> tuple[int, dict]:
    return 200, {"data": {root: value}}


def error(message: str, status: int = 200) -> tuple[int, dict]:
    return status, {"errors": [{"message": message, "extensions": {"code": "RUNPOD"}}], "data": None}


def gpu_answer() -> tuple[int, dict]:
    return data("gpuTypes", [{"id": "NVIDIA RTX A6000", "lowestPrice": {"minimumBidPrice": 0.25}}])


def test_sdk_gets_our_url_and_key_for_the_call_only(api, server):
    import runpod

    server.script["pod"] = [data("pod", POD)]
    pod = api.get_pod(POD["id"])
    assert server.seen[-1][2] == f"Bearer {KEY}"
    import os

    assert "RUNPOD_API_BASE_URL" not in os.environ and runpod.api_key != KEY  # restored after the call
    assert pod.status == PodStatus.RUNNING
    assert (pod.ssh_host, pod.ssh_port) == ("203.0.113.9", 41022)  # public one, not the proxy IP
    assert pod.env == {"A": "1", "B": "x=y"} and pod.data_center_id == "US-TX-3"


def test_running_without_runtime_is_starting_and_has_no_ssh(api, server):
    server.script["pod"] = [data("pod", POD | {"runtime": None})]
    pod = api.get_pod(POD["id"])
    assert pod.status == PodStatus.STARTING and pod.ssh_host is None and not pod.ssh_ready


def test_unknown_or_terminated_pod_is_none(api, server):
    server.script["pod"] = [data("pod", None), data("pod", POD | {"desiredStatus": "TERMINATED"})]
    assert api.get_pod("nosuchpod") is None
    assert api.get_pod(POD["id"]) is None


def test_create_escapes_every_literal(api, server):
    nasty = {"QUOTE": 'say "hi"', "BACKSLASH": "C:\\dir\\", "NEWLINE": "line1\nline2", "INJECT": '"}) { id } }#'}
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podFindAndDeployOnDemand"] = [data("podFindAndDeployOnDemand", {"id": POD["id"]})]
    server.script["pod"] = [data("pod", POD)]
    name = 'pst "job"\\1'
    pod = api.create_pod(PodRequest(name=name, image="img:1", gpu_type_id="NVIDIA RTX A6000", env=nasty))
    assert pod.id == POD["id"]
    fields = next(f for root, f, _ in server.seen if root == "podFindAndDeployOnDemand")
    assert len(fields) == 1  # nothing injected a second root field
    args = {a.name.value: value_from_ast_untyped(a.value) for a in fields[0].arguments}["input"]
    assert args["name"] == name
    assert {e["key"]: e["value"] for e in args["env"]} == nasty
    assert "dockerArgs" not in args  # "" would replace the image's start command
    assert args["ports"] == "22/tcp" and args["volumeMountPath"] == "/workspace"


def test_create_walks_data_centers_on_no_capacity(api, server):
    msg = "There are no longer any instances available with the requested specifications. Please refresh."
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podFindAndDeployOnDemand"] = [
        error(msg),
        data("podFindAndDeployOnDemand", {"id": POD["id"]}),
    ]
    server.script["pod"] = [data("pod", POD)]
    req = PodRequest(name="n", image="i", gpu_type_id="NVIDIA RTX A6000", data_center_ids=["EU-RO-1", "US-TX-3"])
    assert api.create_pod(req).id == POD["id"]
    dcs = [
        value_from_ast_untyped(f[0].arguments[0].value)["dataCenterId"]
        for root, f, _ in server.seen
        if root == "podFindAndDeployOnDemand"
    ]
    assert dcs == ["EU-RO-1", "US-TX-3"]


def test_no_capacity_everywhere_is_raised_unretried(api, server, sleeps):
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podFindAndDeployOnDemand"] = [error("There are no longer any instances available.")]
    with pytest.raises(NoCapacityError) as info:
        api.create_pod(PodRequest(name="n", image="i", gpu_type_id="NVIDIA RTX A6000"))
    assert server.roots().count("podFindAndDeployOnDemand") == 1 and sleeps == []
    assert info.value.fix


def test_create_500_after_create_is_found_by_name(api, server):
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podFindAndDeployOnDemand"] = [error("Something went wrong. Please try again later.", 500)]
    server.script["myself"] = [data("myself", {"pods": []}), data("myself", {"pods": [POD]})]
    pod = api.create_pod(PodRequest(name=POD["name"], image="i", gpu_type_id="NVIDIA RTX A6000"))
    assert pod.id == POD["id"]
    assert server.roots().count("podFindAndDeployOnDemand") == 1


def test_429_without_errors_key_is_transient_and_retried(api, server, sleeps):
    # RunPod's gateway answers 429 with a JSON body that has no "errors": the SDK then raises KeyError.
    server.script["myself"] = [
        (429, {"title": "Too Many Requests"}),
        (502, "<html>bad gateway</html>"),
        data("myself", {"pods": [POD]}),
    ]
    assert [p.id for p in api.list_pods()] == [POD["id"]]
    assert len(sleeps) == 2


def test_transient_forever_is_bounded(api, server, sleeps):
    server.script["myself"] = [(503, {"message": "unavailable"})]
    with pytest.raises(TransientError) as info:
        api.list_pods()
    assert server.roots().count("myself") == 4
    assert KEY not in str(info.value)


def test_401_is_auth_error(api, server):
    server.script["myself"] = [(401, {"message": "bad key"})]
    with pytest.raises(AuthError) as info:
        api.list_volumes()
    assert "RUNPOD_API_KEY" in str(info.value)


def test_unknown_gpu_is_validation_error(api, server):
    server.script["gpuTypes"] = [data("gpuTypes", [])]
    with pytest.raises(ValidationError):
        api.create_pod(PodRequest(name="n", image="i", gpu_type_id="NVIDIA Imaginary 9000"))
    assert "podFindAndDeployOnDemand" not in server.roots()


def test_interruptible_rents_with_the_minimum_bid(api, server):
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podRentInterruptable"] = [data("podRentInterruptable", {"id": POD["id"]})]
    server.script["pod"] = [data("pod", POD | {"podType": "INTERRUPTABLE"})]
    pod = api.create_pod(PodRequest(name="n", image="i", gpu_type_id="NVIDIA RTX A6000", interruptible=True))
    assert pod.interruptible
    fields = next(f for root, f, _ in server.seen if root == "podRentInterruptable")
    args = value_from_ast_untyped(fields[0].arguments[0].value)
    assert args["bidPerGpu"] == 0.25 and args["cloudType"] == "SECURE"


def test_gpu_types_with_stock_per_data_center(api, server):
    server.script["dataCenters"] = [data("dataCenters", [{"id": "US-TX-3"}, {"id": "EU-RO-1"}])]
    server.script["gpuTypes"] = [
        data(
            "gpuTypes",
            [
                {
                    "id": "NVIDIA RTX A6000",
                    "displayName": "RTX A6000",
                    "memoryInGb": 48,
                    "secureCloud": True,
                    "communityCloud": True,
                    "securePrice": 0.49,
                    "communityPrice": 0.33,
                    "lowestPrice": {"stockStatus": "Medium"},
                    "dc0": {"stockStatus": "High"},
                    "dc1": {"stockStatus": None},
                },
                {"id": "unknown", "displayName": "?", "memoryInGb": 0},
            ],
        )
    ]
    (gpu,) = api.list_gpu_types()
    assert (gpu.secure_price, gpu.community_price, gpu.stock) == (0.49, 0.33, Stock.MEDIUM)
    assert [(d.data_center_id, d.stock) for d in gpu.data_centers] == [("US-TX-3", Stock.HIGH)]
    fields = next(f for root, f, _ in server.seen if root == "gpuTypes")
    aliases = [s.alias.value for s in fields[0].selection_set.selections if getattr(s, "alias", None)]
    assert aliases == ["dc0", "dc1"]


def test_create_sends_the_start_command_as_docker_args_verbatim(api, server):
    from pistachio_infra.pods.guard import start_command
    from pistachio_infra.pods.watchdog import WatchdogPolicy

    cmd = start_command(WatchdogPolicy(max_runtime_s=3600), rest_url="https://rest.runpod.io/v1", limit_s=600)
    server.script["gpuTypes"] = [gpu_answer()]
    server.script["podFindAndDeployOnDemand"] = [data("podFindAndDeployOnDemand", {"id": POD["id"]})]
    server.script["pod"] = [data("pod", POD)]
    api.create_pod(PodRequest(name="pst-guard", image="img:1", gpu_type_id="NVIDIA RTX A6000", args=cmd))
    fields = next(f for root, f, _ in server.seen if root == "podFindAndDeployOnDemand")
    args = {a.name.value: value_from_ast_untyped(a.value) for a in fields[0].arguments}["input"]
    assert args["dockerArgs"] == cmd and cmd.startswith("bash -c ")
