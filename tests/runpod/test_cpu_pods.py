"""CPU pods through the port (REST v2 `POST /v2/pods` with `cpu: {id, vcpuCount}`, `GET /v2/catalog/cpus`) against
the sandbox, which serves them like GPU pods: flavours with prices per vCPU, stock in vCPUs per data center, a real
sshd, per-second billing (as cpuAmount in `/v2/billing/pods`).

Shapes from RunPod's REST v2 OpenAPI document (pistachio_infra/sandbox/openapi-v2.json, the copy of
reference/runpod-openapi-v2.json): CreatePodRequest.cpu = CreateCpuConfig {id, vcpuCount (≥ 2, a power of two)},
memory derived from the flavour's ramGbPerVcpu, `mounts.persistent` invalid with `cpu`; Pod.cpu = CpuConfig {id,
vcpuCount, memory} with `gpu` omitted; CpuType {id, name, group, vcpu {min, max}, ramGbPerVcpu, price
{securePerVcpu, serverlessPerVcpu}, availability, dataCenters}. (REST v1's computeType / cpuFlavorIds / vcpuCount
fields belong to the API retired on 2026-11-15 and are not served.)
"""

from __future__ import annotations

import socket

import httpx
import pytest
from test_contract import FAST, IMAGE, cloud_of, public_key, unique, wait_for

from pistachio_infra.runpod import connect
from pistachio_infra.runpod.port import (
    CpuPodRequest,
    NoCapacityError,
    PodStatus,
    RunPodApiError,
    Stock,
    ValidationError,
)

__all__ = ["public_key"]  # the module-scoped fixture, shared with the contract tests


@pytest.fixture
def rest(sandbox):
    client = connect(cloud_of(sandbox), "rest", policy=FAST)
    yield client
    for pod in client.list_pods():
        client.terminate_pod(pod.id)
    client.close()


def cpu_request(public_key: str, flavor: str, vcpus: int, **kw) -> CpuPodRequest:
    return CpuPodRequest(name=kw.pop("name", unique("pst-cpu")), image=IMAGE, flavor_id=flavor, vcpu_count=vcpus,
                         env={"PUBLIC_KEY": public_key}, **kw)


def test_cpu_flavours_have_prices_vcpu_ranges_and_stock(rest):
    flavors = rest.list_cpu_flavors()
    assert flavors, "no CPU flavours"
    for f in flavors:
        assert f.price_per_vcpu_hr > 0 and 2 <= f.vcpu_min <= f.vcpu_max and f.ram_gb_per_vcpu > 0
        assert f.price_per_hr(4) == pytest.approx(4 * f.price_per_vcpu_hr)
    stocked = [f for f in flavors if f.stock != Stock.NONE]
    assert stocked and all(f.data_centers for f in stocked)
    # asking for pods bigger than any data center has free: no stock anywhere
    assert all(f.stock == Stock.NONE for f in rest.list_cpu_flavors(vcpu_count=4096))


def test_cpu_pod_lifecycle_and_per_second_billing(rest, sandbox, sandbox_admin, public_key):
    cheapest = min((f for f in rest.list_cpu_flavors() if f.stock != Stock.NONE),
                   key=lambda f: f.price_per_hr(2))
    request = cpu_request(public_key, cheapest.id, 2)
    pod = rest.create_cpu_pod(request)
    assert pod.cpu_flavor_id == cheapest.id and pod.vcpu_count == 2 and pod.gpu_type_id is None
    assert pod.memory_gb == round(2 * cheapest.ram_gb_per_vcpu)
    assert pod.cost_per_hr == pytest.approx(cheapest.price_per_hr(2))
    assert rest.find_pod_by_name(request.name).id == pod.id

    up = wait_for(rest, pod.id, lambda p: p is not None and p.ssh_ready)
    assert up.status == PodStatus.RUNNING and up.env.get("RUNPOD_CPU_COUNT") in (None, "2")
    with socket.create_connection((up.ssh_host, up.ssh_port), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0")  # a real sshd, as for GPU pods

    rest.terminate_pod(pod.id)
    assert rest.get_pod(pod.id) is None
    record = next(p for p in sandbox_admin.pods() if p["id"] == pod.id)
    seconds = record["terminated_at"] - record["created_at"]
    billed = sandbox_admin.billing()[pod.id]
    assert billed == pytest.approx(cheapest.price_per_hr(2) * seconds / 3600, rel=0.02)  # per second, not per hour
    report = httpx.get(f"{sandbox.rest_url.rstrip('/')}/billing/pods", params={"podId": pod.id},
                       headers={"Authorization": f"Bearer {sandbox.api_key}"}).json()
    totals = report["metadata"]["totals"]
    assert totals["cpuAmount"] == pytest.approx(billed, rel=1e-6) and totals["gpuAmount"] == 0


def test_cpu_pod_refusals_and_stock(rest, sandbox_admin, public_key):
    flavors = {f.id: f for f in rest.list_cpu_flavors()}
    small = min(flavors.values(), key=lambda f: f.vcpu_max)
    with pytest.raises(ValidationError, match="power of two"):
        rest.create_cpu_pod(cpu_request(public_key, small.id, 6))  # refused before the request is sent
    with pytest.raises(RunPodApiError, match="vcpuCount"):
        rest.create_cpu_pod(cpu_request(public_key, small.id, small.vcpu_max * 2))
    with pytest.raises(RunPodApiError, match="does not exist"):
        rest.create_cpu_pod(cpu_request(public_key, "cpu-nonesuch", 2))
    assert sandbox_admin.pods() == []
    # a data center's vCPUs are held by its running CPU pods: fill one, the next pod there has no capacity
    flavor = next(f for f in flavors.values() if f.data_centers)
    dc = flavor.data_centers[0].data_center_id

    def room() -> bool:  # the catalog still shows stock for one more such pod there
        f = next(f for f in rest.list_cpu_flavors(vcpu_count=flavor.vcpu_max) if f.id == flavor.id)
        return any(d.data_center_id == dc and d.stock != Stock.NONE for d in f.data_centers)

    taken = []
    while room():
        taken.append(rest.create_cpu_pod(cpu_request(public_key, flavor.id, flavor.vcpu_max,
                                                     data_center_ids=[dc])))
    assert taken, f"{flavor.id} had no room for one {flavor.vcpu_max}-vCPU pod in {dc}"
    before = len(sandbox_admin.pods())
    with pytest.raises(NoCapacityError):
        rest.create_cpu_pod(cpu_request(public_key, flavor.id, flavor.vcpu_max, data_center_ids=[dc]))
    assert len(sandbox_admin.pods()) == before


def test_the_graphql_adapter_sends_cpu_pods_to_rest(sandbox, public_key):
    gql = connect(cloud_of(sandbox), "graphql", policy=FAST)
    try:
        with pytest.raises(ValidationError, match="REST v2"):
            gql.create_cpu_pod(cpu_request(public_key, "cpu3c", 2))
    finally:
        gql.close()
