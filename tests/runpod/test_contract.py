"""The RunPod port's contract: both adapters (REST v2, GraphQL via the runpod SDK) against the sandbox.

Each test runs once per adapter on a fresh sandbox; faults are injected with the sandbox's admin API.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import pytest

from pistachio_infra.endpoints import Cloud
from pistachio_infra.runpod import connect
from pistachio_infra.runpod.port import (
    AuthError,
    InsufficientBalanceError,
    NoCapacityError,
    Pod,
    PodRequest,
    PodStatus,
    RunPodApi,
    Stock,
    Template,
    ValidationError,
)
from pistachio_infra.runpod.retry import RetryPolicy

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
FAST = RetryPolicy(
    max_attempts=8,
    max_total_s=30,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    jitter_s=0.05,
    max_retry_after_s=5,
    lookup_attempts=6,
    lookup_wait_s=0.2,
)
ADAPTER_API = {"rest": "rest", "graphql": "graphql"}  # the sandbox's fault `api` selector per adapter


@pytest.fixture(scope="module")
def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def cloud_of(info) -> Cloud:
    return Cloud(
        rest_url=info.rest_url,
        graphql_base=info.graphql_base,
        api_key=info.api_key,
        hf_endpoint=info.hf_endpoint,
        hf_token=None,
        sandbox=True,
    )


@pytest.fixture(params=["rest", "graphql"])
def adapter(request) -> str:
    return request.param


@pytest.fixture
def api(adapter, sandbox):
    client = connect(cloud_of(sandbox), adapter, policy=FAST)
    yield client
    for pod in client.list_pods():
        client.terminate_pod(pod.id)
    client.close()


def unique(prefix: str = "pst-contract") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pod_request(public_key: str, gpu: str, **kw) -> PodRequest:
    env = {"PUBLIC_KEY": public_key, **kw.pop("env", {})}
    return PodRequest(name=kw.pop("name", unique()), image=IMAGE, gpu_type_id=gpu, env=env, **kw)


def wait_for(api: RunPodApi, pod_id: str, done: Callable[[Pod | None], bool], timeout: float = 30) -> Pod | None:
    deadline = time.monotonic() + timeout
    while True:
        pod = api.get_pod(pod_id)
        if done(pod):
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {pod_id} did not get there in {timeout}s: {pod}")
        time.sleep(0.2)


def stocked_gpu(api: RunPodApi, data_center: str | None = None) -> str:
    """A GPU type with free stock (in `data_center` when given), read from the catalog, not hard-coded."""
    for gpu in sorted(api.list_gpu_types(), key=lambda g: g.secure_price or 99):
        if data_center is None and gpu.stock != Stock.NONE:
            return gpu.id
        if any(d.data_center_id == data_center and d.stock != Stock.NONE for d in gpu.data_centers):
            return gpu.id
    raise AssertionError(f"the sandbox catalog has no stocked GPU in {data_center}")


def live_pods_named(admin, name: str) -> list[dict]:
    return [p for p in admin.pods() if p.get("name") == name and p.get("status") != "TERMINATED"]


# --- catalog ------------------------------------------------------------------------------------------------


def test_gpu_types_have_prices_and_stock_per_data_center(api):
    gpus = api.list_gpu_types()
    assert gpus, "no GPU types"
    assert all(g.id != "unknown" and g.memory_gb > 0 for g in gpus)
    priced = [g for g in gpus if g.secure_price]
    assert priced and all(g.secure_price > 0 for g in priced)
    assert any(g.community_price for g in gpus)
    stocked = [g for g in gpus if g.stock != Stock.NONE]
    assert stocked, "every GPU type is out of stock"
    for g in stocked:
        assert g.data_centers, f"{g.id} is in stock but has no data center"
        assert all(d.data_center_id for d in g.data_centers)


def test_both_adapters_read_the_same_catalog(sandbox):
    rest = connect(cloud_of(sandbox), "rest", policy=FAST)
    gql = connect(cloud_of(sandbox), "graphql", policy=FAST)

    def view(api: RunPodApi) -> dict:
        return {
            g.id: (
                g.memory_gb,
                g.secure_price,
                g.community_price,
                g.stock,
                sorted((d.data_center_id, d.stock) for d in g.data_centers if d.stock != Stock.NONE),
            )
            for g in api.list_gpu_types()
        }

    assert view(rest) == view(gql)


# --- pods ---------------------------------------------------------------------------------------------------


def test_pod_lifecycle(api, sandbox_admin, public_key):
    gpu = stocked_gpu(api)
    request = pod_request(public_key, gpu)
    pod = api.create_pod(request)
    assert pod.name == request.name and pod.id
    assert pod.ssh_host is None and not pod.ssh_ready  # nothing is up right after create

    assert api.get_pod(pod.id).id == pod.id
    assert pod.id in [p.id for p in api.list_pods()]
    assert api.find_pod_by_name(request.name).id == pod.id
    assert api.find_pod_by_name(unique("nobody")) is None

    up = wait_for(api, pod.id, lambda p: p is not None and p.ssh_ready)
    assert up.status == PodStatus.RUNNING and up.gpu_type_id == gpu and up.data_center_id
    assert up.cost_per_hr > 0
    with socket.create_connection((up.ssh_host, up.ssh_port), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0")  # a real sshd behind the endpoint

    updated = api.update_pod(pod.id, env={**up.env, "STAGE": "two"})
    assert updated.id == pod.id
    assert wait_for(api, pod.id, lambda p: p is not None and p.env.get("STAGE") == "two")

    api.stop_pod(pod.id)
    stopped = wait_for(api, pod.id, lambda p: p is not None and p.status == PodStatus.EXITED)
    assert stopped.ssh_host is None and not stopped.ssh_ready
    api.stop_pod(pod.id)  # stopping a stopped pod is not an error

    api.start_pod(pod.id)
    wait_for(api, pod.id, lambda p: p is not None and p.ssh_ready)

    api.terminate_pod(pod.id)
    assert api.get_pod(pod.id) is None
    assert pod.id not in [p.id for p in api.list_pods()]
    assert api.find_pod_by_name(request.name) is None
    api.terminate_pod(pod.id)  # idempotent
    assert sandbox_admin.billing().get(pod.id, 0) > 0


def test_quotes_backslashes_and_newlines_survive_the_trip(api, public_key):
    # GraphQL: the SDK pastes literals into the query text; unescaped, these would break or inject.
    nasty = {"QUOTE": 'say "hi"', "BACKSLASH": "C:\\dir\\", "NEWLINE": "one\ntwo", "INJECT": '"}) { id } }#'}
    name = unique() + ' "q" \\'
    pod = api.create_pod(pod_request(public_key, stocked_gpu(api), name=name, env=nasty))
    read = api.get_pod(pod.id)
    assert read.name == name
    assert {k: read.env[k] for k in nasty} == nasty
    assert api.find_pod_by_name(name).id == pod.id
    # (the sandbox's pod host refuses such env values at boot; RunPod does not: so no wait for RUNNING here)
    api.terminate_pod(pod.id)


def test_a_pod_created_by_one_adapter_reads_the_same_through_the_other(sandbox, public_key):
    rest = connect(cloud_of(sandbox), "rest", policy=FAST)
    gql = connect(cloud_of(sandbox), "graphql", policy=FAST)
    pod = gql.create_pod(pod_request(public_key, stocked_gpu(rest)))
    try:
        a = wait_for(rest, pod.id, lambda p: p is not None and p.ssh_ready)
        b = gql.get_pod(pod.id)
        fields = ("id", "name", "status", "gpu_type_id", "gpu_count", "data_center_id", "ssh_host", "ssh_port", "env")
        assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
        assert a.cost_per_hr == pytest.approx(b.cost_per_hr)
    finally:
        rest.terminate_pod(pod.id)


# --- network volumes ----------------------------------------------------------------------------------------


def test_volumes_and_data_center_pinning(api, public_key):
    gpus = api.list_gpu_types()
    # a data center that offers both stock and (per the sandbox) volumes; another one for the refusal
    home = "US-TX-3"
    gpu = stocked_gpu(api, home)
    elsewhere = next(d.data_center_id for g in gpus for d in g.data_centers if d.data_center_id != home)

    name = unique("pst-vol")
    vol = api.create_volume(name, 20, home)
    assert (vol.name, vol.size_gb, vol.data_center_id) == (name, 20, home)
    assert api.get_volume(vol.id) == vol
    assert vol.id in [v.id for v in api.list_volumes()]

    grown = api.update_volume(vol.id, name=name + "-b", size_gb=30)
    assert (grown.name, grown.size_gb) == (name + "-b", 30)
    with pytest.raises(ValidationError):
        api.update_volume(vol.id, size_gb=10)  # volumes never shrink

    with pytest.raises(ValidationError) as refused:  # a rule, not "no capacity": do not fall back on it
        api.create_pod(pod_request(public_key, gpu, network_volume_id=vol.id, data_center_ids=[elsewhere]))
    assert "\n" not in str(refused.value)

    pod = api.create_pod(pod_request(public_key, gpu, network_volume_id=vol.id))
    placed = wait_for(api, pod.id, lambda p: p is not None and p.status != PodStatus.PROVISIONING)
    assert placed.data_center_id == home and placed.network_volume_id == vol.id
    api.terminate_pod(pod.id)

    api.delete_volume(vol.id)
    assert api.get_volume(vol.id) is None
    api.delete_volume(vol.id)  # idempotent


# --- templates ----------------------------------------------------------------------------------------------


def test_templates_crud(api):
    name = unique("pst-tpl")
    made = api.create_template(
        Template(id="", name=name, image=IMAGE, container_disk_gb=40, volume_gb=20, env={"Q": 'x "y"\nz'})
    )
    assert made.id and made.name == name and made.image == IMAGE
    assert made.env == {"Q": 'x "y"\nz'} and made.container_disk_gb == 40 and made.volume_gb == 20
    assert api.get_template(made.id) == made
    assert made.id in [t.id for t in api.list_templates()]

    changed = api.update_template(made.model_copy(update={"image": IMAGE + "-v2", "env": {"Q": "2"}}))
    assert (changed.id, changed.image, changed.env) == (made.id, IMAGE + "-v2", {"Q": "2"})
    assert api.get_template(made.id).image == IMAGE + "-v2"

    api.delete_template(made.id)
    assert api.get_template(made.id) is None
    api.delete_template(made.id)  # idempotent


def test_template_create_recovery_never_adopts_an_older_namesake(api, adapter, sandbox_admin):
    """Template names need not be unique (the REST v2 spec asks nothing of them), so a create that errs after
    creating must find the template it made, not an older one of the same name (issue 18)."""
    name = unique("pst-tpl")
    older = api.create_template(Template(id="", name=name, image=IMAGE, container_disk_gb=10))
    sandbox_admin.inject("create_500_after_create", count=1, api=ADAPTER_API[adapter], resource="template")
    made = api.create_template(Template(id="", name=name, image=IMAGE + "-new", container_disk_gb=10))
    assert sandbox_admin.faults() == []  # the 500 was really answered
    assert made.id != older.id and made.image == IMAGE + "-new"
    assert sorted(t.id for t in api.list_templates() if t.name == name) == sorted([older.id, made.id])
    api.delete_template(made.id)
    api.delete_template(older.id)


# --- faults the sandbox injects -----------------------------------------------------------------------------


def test_rate_limit_burst_is_waited_out(api, adapter, sandbox_admin):
    sandbox_admin.inject("rate_limit", count=2, retry_after=1, api=ADAPTER_API[adapter])
    started = time.monotonic()
    assert isinstance(api.list_pods(), list)
    assert sandbox_admin.faults() == []  # both 429s were really answered
    if adapter == "rest":  # REST carries Retry-After; our backoff alone (≤0.5 s) could not take this long
        assert time.monotonic() - started >= 1.8


def test_server_error_burst_is_retried(api, adapter, sandbox_admin):
    sandbox_admin.inject("server_error", count=3, status=503, api=ADAPTER_API[adapter])
    assert api.list_gpu_types()
    assert sandbox_admin.faults() == []


def test_create_500_after_create_leaves_exactly_one_pod(api, adapter, sandbox_admin, public_key):
    gpu = stocked_gpu(api)
    sandbox_admin.inject("create_500_after_create", count=1, api=ADAPTER_API[adapter])
    request = pod_request(public_key, gpu)
    pod = api.create_pod(request)
    assert pod.name == request.name
    assert sandbox_admin.faults() == []  # the 500 was really answered
    assert [p["id"] for p in live_pods_named(sandbox_admin, request.name)] == [pod.id]


def test_create_server_error_before_create_retries_to_one_pod(api, adapter, sandbox_admin, public_key):
    gpu = stocked_gpu(api)
    operation = {"rest": {"method": "POST", "path": "/v2/pods"}, "graphql": {"operation": "podFindAndDeployOnDemand"}}
    sandbox_admin.inject("server_error", count=2, status=502, api=ADAPTER_API[adapter], **operation[adapter])
    request = pod_request(public_key, gpu)
    pod = api.create_pod(request)
    assert sandbox_admin.faults() == []
    assert [p["id"] for p in live_pods_named(sandbox_admin, request.name)] == [pod.id]


def test_no_capacity_is_raised_and_nothing_is_created(api, sandbox_admin, public_key):
    gpu = stocked_gpu(api)
    sandbox_admin.inject("no_capacity", gpu=gpu)
    request = pod_request(public_key, gpu)
    with pytest.raises(NoCapacityError) as info:
        api.create_pod(request)
    assert info.value.fix and "\n" not in str(info.value)
    assert live_pods_named(sandbox_admin, request.name) == []


def test_no_capacity_in_one_data_center_places_in_the_next(api, sandbox_admin, public_key):
    gpus = api.list_gpu_types()
    gpu = next(g for g in gpus if len([d for d in g.data_centers if d.stock != Stock.NONE]) >= 2)
    first, second = [d.data_center_id for d in gpu.data_centers if d.stock != Stock.NONE][:2]
    sandbox_admin.inject("no_capacity", gpu=gpu.id, data_center=first)
    pod = api.create_pod(pod_request(public_key, gpu.id, data_center_ids=[first, second]))
    placed = wait_for(api, pod.id, lambda p: p is not None and p.data_center_id is not None)
    assert placed.data_center_id == second


def test_resume_without_a_free_gpu_is_no_capacity(api, sandbox_admin, public_key):
    pod = api.create_pod(pod_request(public_key, stocked_gpu(api)))
    wait_for(api, pod.id, lambda p: p is not None and p.ssh_ready)
    api.stop_pod(pod.id)
    wait_for(api, pod.id, lambda p: p is not None and p.status == PodStatus.EXITED)
    sandbox_admin.inject("resume_no_gpu", count=1)
    with pytest.raises(NoCapacityError):
        api.start_pod(pod.id)
    assert api.get_pod(pod.id).status == PodStatus.EXITED
    api.terminate_pod(pod.id)


@pytest.mark.parametrize(
    ("kind", "error"), [("insufficient_balance", InsufficientBalanceError), ("forbidden", AuthError)]
)
def test_refused_creates_are_not_retried(api, sandbox_admin, public_key, kind, error):
    gpu = stocked_gpu(api)
    sandbox_admin.inject(kind, count=1)
    request = pod_request(public_key, gpu)
    with pytest.raises(error) as info:
        api.create_pod(request)
    assert "\n" not in str(info.value)
    assert live_pods_named(sandbox_admin, request.name) == []
    # the fault fired once and was not retried into success: the next create works
    assert api.create_pod(pod_request(public_key, gpu)).id


def test_interruptible(api, adapter, public_key):
    gpu = stocked_gpu(api)
    request = pod_request(public_key, gpu, interruptible=True)
    if adapter == "rest":
        with pytest.raises(ValidationError):  # REST v2 has no spot pods
            api.create_pod(request)
        return
    pod = api.create_pod(request)
    assert pod.interruptible
    assert api.get_pod(pod.id).interruptible
