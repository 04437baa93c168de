"""Fast unit tests of the REST v2 adapter's error mapping, retry policy and idempotent create.

The network is replaced with httpx.MockTransport (httpx's own seam); everything above it is the real adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import pistachio_infra
from pistachio_infra.runpod.port import (
    AuthError,
    ConflictError,
    InsufficientBalanceError,
    NoCapacityError,
    NotFoundError,
    PodRequest,
    PodStatus,
    RateLimitedError,
    Stock,
    TransientError,
    ValidationError,
)
from pistachio_infra.runpod.rest_v2 import RestV2Api
from pistachio_infra.runpod.retry import RetryPolicy

KEY = "rpa_SECRETKEY0123456789"
BASE = "http://runpod.test/v2"
SPEC_PATH = Path(pistachio_infra.__file__).parent / "sandbox" / "openapi-v2.json"


def pod_json(pod_id: str = "p1", name: str = "pst-a", status: str = "RUNNING", ssh: bool = True) -> dict:
    return {
        "id": pod_id,
        "name": name,
        "image": "img:1",
        "args": "",
        "disk": 50,
        "ports": ["22/tcp"],
        "env": {"A": "1"},
        "registry": None,
        "status": status,
        "actions": ["stop", "terminate"],
        "mounts": {"network": [{"volumeId": "vol1", "path": "/workspace"}]},
        "gpu": {"id": "NVIDIA RTX A6000", "count": 1},
        "cloud": "SECURE",
        "dataCenterId": "US-TX-3",
        "cudaVersion": "12.8",
        "ssh": {
            "proxy": None,
            "direct": {"host": "203.0.113.5", "port": 40022, "username": "root", "command": "ssh ..."} if ssh else None,
        },
        "template": None,
        "cost": 0.49,
        "locked": False,
        "runtime": {"uptime": 12, "ports": []} if ssh else None,
        "createdAt": "2026-03-13T20:00:00Z",
        "startedAt": None,
        "globalNetworking": {"enabled": False},
    }


def problem(status: int, detail: str, headers: dict[str, str] | None = None, errors: list[str] | None = None):
    body = {"title": "x", "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json", **(headers or {})})


class Recorder:
    """A scripted RunPod: each (method, path) pops the next answer; every request is recorded."""

    def __init__(self, script: dict[tuple[str, str], list]) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        answers = self.script.get(key)
        if not answers:
            raise AssertionError(f"unexpected {key}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == path)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=5,
        max_total_s=30,
        backoff_initial_s=0.5,
        backoff_max_s=4,
        jitter_s=0.5,
        lookup_attempts=3,
        lookup_wait_s=0.25,
        sleep=sleeps.append,
    )


def api(recorder: Recorder, policy: RetryPolicy) -> RestV2Api:
    return RestV2Api(BASE, KEY, transport=httpx.MockTransport(recorder), policy=policy)


def request(**kw) -> PodRequest:
    return PodRequest(name="pst-job-1-a1", image="img:1", gpu_type_id="NVIDIA RTX A6000", **kw)


# --- error mapping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "detail", "error"),
    [
        (401, "invalid bearer token", AuthError),
        (402, "insufficient balance", InsufficientBalanceError),
        (403, "access denied to pool", AuthError),
        (422, "Request validation failed.", ValidationError),
        (400, "no capacity for NVIDIA RTX A6000 in US-TX-3", NoCapacityError),
        (400, "There are no longer any instances available with the requested specifications.", NoCapacityError),
        (400, "persistent and network mounts are mutually exclusive", ValidationError),
    ],
)
def test_create_errors_map_and_are_not_retried(status, detail, error, policy, sleeps):
    # The detail echoes the key and spans lines: the message must be one line without the key.
    rec = Recorder({("POST", "/v2/pods"): [problem(status, f"{detail}\nkey={KEY}", errors=["$.gpu: bad"])]})
    with pytest.raises(error) as info:
        api(rec, policy).create_pod(request())
    msg = str(info.value)
    assert rec.count("POST", "/v2/pods") == 1
    assert rec.count("GET", "/v2/pods") == 0  # a refused create is not looked up
    assert sleeps == []
    assert "\n" not in msg and KEY not in msg
    assert info.value.fix and info.value.fix in msg
    assert info.value.status == status


def test_not_found_conflict_and_gone_resources(policy):
    rec = Recorder(
        {
            ("GET", "/v2/pods/gone"): [problem(404, "pod not found")],
            ("GET", "/v2/pods/dead"): [httpx.Response(200, json=pod_json("dead", status="TERMINATED"))],
            ("DELETE", "/v2/pods/gone"): [problem(404, "pod not found")],
            ("GET", "/v2/network-volumes/nv"): [problem(404, "not found")],
            ("GET", "/v2/templates/tp"): [problem(404, "not found")],
            ("PATCH", "/v2/pods/gone"): [problem(404, "pod not found")],
            ("POST", "/v2/pods/p1/action"): [problem(409, "pod is not running")],
            ("GET", "/v2/pods/p1"): [httpx.Response(200, json=pod_json("p1", status="RUNNING"))],
        }
    )
    a = api(rec, policy)
    assert a.get_pod("gone") is None
    assert a.get_pod("dead") is None
    a.terminate_pod("gone")  # idempotent
    assert a.get_volume("nv") is None
    assert a.get_template("tp") is None
    with pytest.raises(NotFoundError):
        a.update_pod("gone", image="x")
    a.start_pod("p1")  # 409 but already RUNNING: done
    with pytest.raises(ConflictError):
        a.stop_pod("p1")  # 409 and not EXITED: the conflict stands


def test_ids_cannot_change_the_url(policy):
    a = api(Recorder({}), policy)
    with pytest.raises(ValidationError):
        a.get_pod("../account")


# --- retry policy ---------------------------------------------------------------------------------------------


def test_429_honours_retry_after(policy, sleeps):
    rec = Recorder(
        {
            ("GET", "/v2/pods"): [
                problem(429, "rate limit exceeded for the minute window", {"Retry-After": "3"}),
                problem(429, "rate limit exceeded for the minute window", {"Retry-After": "2"}),
                httpx.Response(200, json={"pods": [pod_json()]}),
            ]
        }
    )
    pods = api(rec, policy).list_pods()
    assert [p.id for p in pods] == ["p1"]
    assert sleeps == [3.0, 2.0]


def test_429_longer_than_the_budget_gives_up_with_retry_after(policy, sleeps):
    rec = Recorder({("GET", "/v2/pods"): [problem(429, "slow down", {"Retry-After": "120"})]})
    short = RetryPolicy(max_total_s=10, max_retry_after_s=300, sleep=sleeps.append)
    with pytest.raises(RateLimitedError) as info:
        api(rec, short).list_pods()
    assert info.value.retry_after == 120
    assert sleeps == [] and rec.count("GET", "/v2/pods") == 1


def test_5xx_backs_off_with_jitter_then_succeeds(policy, sleeps):
    rec = Recorder(
        {
            ("GET", "/v2/pods"): [
                problem(500, "boom"),
                problem(502, "bad gateway"),
                httpx.Response(503, text="<html>unavailable</html>"),
                httpx.Response(200, json={"pods": []}),
            ]
        }
    )
    assert api(rec, policy).list_pods() == []
    assert len(sleeps) == 3
    # exponential: 0.5, 1, 2 (+ up to 0.5 jitter each), capped at backoff_max_s
    for n, wait in enumerate(sleeps):
        assert 0.5 * 2**n <= wait <= min(0.5 * 2**n + 0.5, 4.5)


def test_5xx_forever_is_bounded(policy, sleeps):
    rec = Recorder({("GET", "/v2/pods"): [problem(503, "down")]})
    with pytest.raises(TransientError) as info:
        api(rec, policy).list_pods()
    assert rec.count("GET", "/v2/pods") == policy.max_attempts
    assert len(sleeps) == policy.max_attempts - 1
    assert "HTTP 503" in str(info.value)


def test_connection_errors_are_retried(policy, sleeps):
    boom = httpx.ConnectError("connection refused")
    rec = Recorder({("GET", "/v2/pods"): [boom, boom, httpx.Response(200, json={"pods": []})]})
    assert api(rec, policy).list_pods() == []
    assert len(sleeps) == 2


def test_validation_is_never_retried(policy, sleeps):
    rec = Recorder({("PATCH", "/v2/network-volumes/nv1"): [problem(422, "size must be >= current size")]})
    with pytest.raises(ValidationError):
        api(rec, policy).update_volume("nv1", size_gb=5)
    assert rec.count("PATCH", "/v2/network-volumes/nv1") == 1 and sleeps == []


# --- idempotent create ----------------------------------------------------------------------------------------


def test_create_500_after_create_adopts_the_pod_once_listing_catches_up(policy, sleeps):
    made = pod_json("p9", name="pst-job-1-a1", status="PROVISIONING", ssh=False)
    rec = Recorder(
        {
            ("POST", "/v2/pods"): [problem(500, "internal error")],
            # the listing lags: empty once, then the pod appears
            ("GET", "/v2/pods"): [
                httpx.Response(200, json={"pods": []}),
                httpx.Response(200, json={"pods": [pod_json("other", name="someone-else"), made]}),
            ],
        }
    )
    pod = api(rec, policy).create_pod(request())
    assert pod.id == "p9" and pod.status == PodStatus.PROVISIONING
    assert rec.count("POST", "/v2/pods") == 1
    assert rec.count("GET", "/v2/pods") == 2
    assert pod.ssh_host is None and not pod.ssh_ready


def test_create_timeout_then_absent_creates_again(policy, sleeps):
    created = httpx.Response(201, json=pod_json("p2", name="pst-job-1-a1", status="PROVISIONING", ssh=False))
    rec = Recorder(
        {
            ("POST", "/v2/pods"): [httpx.ReadTimeout("timed out"), created],
            ("GET", "/v2/pods"): [httpx.Response(200, json={"pods": []})],
        }
    )
    pod = api(rec, policy).create_pod(request())
    assert pod.id == "p2"
    assert rec.count("POST", "/v2/pods") == 2
    assert rec.count("GET", "/v2/pods") == policy.lookup_attempts  # really absent before creating again


def test_create_lookup_failure_never_creates_blindly(policy, sleeps):
    made = pod_json("p3", name="pst-job-1-a1", status="STARTING", ssh=False)
    rec = Recorder(
        {
            ("POST", "/v2/pods"): [problem(502, "bad gateway")],
            ("GET", "/v2/pods"): [problem(503, "down")] * 5 + [httpx.Response(200, json={"pods": [made]})],
        }
    )
    lenient = RetryPolicy(max_attempts=3, lookup_attempts=2, backoff_initial_s=0.01, sleep=sleeps.append)
    pod = api(rec, lenient).create_pod(request())
    assert pod.id == "p3"
    assert rec.count("POST", "/v2/pods") == 1


def test_create_429_is_retried_without_lookup(policy, sleeps):
    created = httpx.Response(201, json=pod_json("p4", name="pst-job-1-a1", status="PROVISIONING", ssh=False))
    rec = Recorder({("POST", "/v2/pods"): [problem(429, "slow down", {"Retry-After": "1"}), created]})
    assert api(rec, policy).create_pod(request()).id == "p4"
    assert rec.count("GET", "/v2/pods") == 0 and sleeps == [1.0]


def test_interruptible_is_refused_before_any_request(policy):
    rec = Recorder({})
    with pytest.raises(ValidationError) as info:
        api(rec, policy).create_pod(request(interruptible=True))
    assert "graphql" in str(info.value).lower()
    assert rec.requests == []


# --- wire shapes against the OpenAPI document -----------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict:
    return json.loads(SPEC_PATH.read_text())


def validator(spec: dict, schema_name: str):
    from openapi_schema_validator import OAS31Validator

    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return OAS31Validator(schema)


def test_create_body_matches_the_spec(spec, policy):
    rec = Recorder({("POST", "/v2/pods"): [httpx.Response(201, json=pod_json())]})
    a = api(rec, policy)
    a.create_pod(request(network_volume_id="vol1", data_center_ids=["US-TX-3"], env={"K": 'v "q"\n'}))
    a.create_pod(request(volume_gb=20, cloud="COMMUNITY"))
    for sent in rec.requests:
        body = json.loads(sent.content)
        validator(spec, "CreatePodRequest").validate(body)
        assert sent.headers["authorization"] == f"Bearer {KEY}"
    first = json.loads(rec.requests[0].content)
    assert first["mounts"] == {"network": [{"volumeId": "vol1", "path": "/workspace"}]}
    assert first["gpu"] == {"id": "NVIDIA RTX A6000", "count": 1}
    assert first["startSsh"] is True and "22/tcp" in first["ports"]


def test_spec_examples_parse(spec, policy):
    examples = spec["paths"]["/v2/pods"]["get"]["responses"]["200"]["content"]["application/json"]["examples"]
    listing = next(iter(examples.values()))["value"]
    gpus_ex = spec["paths"]["/v2/catalog/gpus"]["get"]["responses"]["200"]["content"]["application/json"]
    rec = Recorder(
        {
            ("GET", "/v2/pods"): [httpx.Response(200, json=listing)],
            ("GET", "/v2/catalog/gpus"): [httpx.Response(200, json=next(iter(gpus_ex["examples"].values()))["value"])],
        }
    )
    a = api(rec, policy)
    pods = a.list_pods()
    assert pods and pods[0].id == listing["pods"][0]["id"]
    gpus = a.list_gpu_types()
    assert gpus[0].secure_price == 0.44 and gpus[0].community_price == 0.31
    assert gpus[0].stock == Stock.HIGH and gpus[0].data_centers[0].data_center_id == "US-KS-2"
    sent = next(r for r in rec.requests if r.url.path == "/v2/catalog/gpus")
    assert sent.url.params["include"] == "AVAILABILITY" and sent.url.params["product"] == "POD"


def test_ssh_endpoint_only_when_direct_is_published(policy):
    rec = Recorder(
        {
            ("GET", "/v2/pods/a"): [httpx.Response(200, json=pod_json("a", status="STARTING", ssh=False))],
            ("GET", "/v2/pods/b"): [httpx.Response(200, json=pod_json("b", status="RUNNING", ssh=True))],
        }
    )
    a = api(rec, policy)
    starting, running = a.get_pod("a"), a.get_pod("b")
    assert starting.ssh_host is None and not starting.ssh_ready
    assert (running.ssh_host, running.ssh_port, running.ssh_ready) == ("203.0.113.5", 40022, True)
    assert running.network_volume_id == "vol1" and running.data_center_id == "US-TX-3"


def test_repr_hides_the_key(policy):
    assert KEY not in repr(api(Recorder({}), policy))
