"""GraphQL at /graphql beyond what the SDK wraps: spot pods, volumes, templates, user settings, data centers,
stock per data center, pod edits, auth forms and the error shapes (HTTP 400 for schema errors, 200 for business)."""

from __future__ import annotations

import time

import httpx
import pytest


def gql(info, query: str, *, key: str | None = None, expect: int = 200, auth: str = "bearer") -> dict:
    key = info.api_key if key is None else key
    headers = {"Authorization": f"Bearer {key}"} if auth == "bearer" else {}
    params = {"api_key": key} if auth == "query" else None
    resp = httpx.post(info.graphql_base + "/graphql", json={"query": query}, headers=headers, params=params,
                      timeout=30)
    assert resp.status_code == expect, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def data(info, query: str, **kw) -> dict:
    body = gql(info, query, **kw)
    assert "errors" not in body, body
    return body["data"]


DEPLOY = ('mutation {{ podFindAndDeployOnDemand(input: {{ name: "{name}", imageName: "img", cloudType: ALL, '
          'gpuTypeId: "{gpu}", gpuCount: 1, dataCenterId: {dc}, ports: "22/tcp", '
          'env: [{{ key: "A", value: "1" }}] }}) {{ id desiredStatus podType costPerHr env '
          'machine {{ dataCenterId }} }} }}')


def test_schema_errors_are_400_and_business_errors_200(sandbox):
    body = gql(sandbox, "query { myself { id noSuchField } }", expect=400)
    assert "noSuchField" in body["errors"][0]["message"]
    assert "Syntax Error" in gql(sandbox, "query { myself { ", expect=400)["errors"][0]["message"]
    bad_enum = DEPLOY.format(name="x", gpu="NVIDIA A40", dc="null").replace("cloudType: ALL", 'cloudType: "ALL"')
    gql(sandbox, bad_enum, expect=400)
    unknown_input = 'mutation { podStop(input: {podId: "x", objectMounts: 1}) { id } }'
    gql(sandbox, unknown_input, expect=400)
    missing = gql(sandbox, 'mutation { podStop(input: {podId: "nosuchpod00000"}) { id } }')
    assert missing["data"] == {"podStop": None}
    assert missing["errors"][0]["path"] == ["podStop"] and missing["errors"][0]["extensions"] == {"code": "RUNPOD"}


def test_auth_forms(sandbox):
    assert data(sandbox, "query { myself { id } }", auth="query")["myself"]["id"]
    assert gql(sandbox, "query { myself { id } }", auth="none", expect=401)["errors"]
    gql(sandbox, "query { myself { id } }", key="rpa_WRONG", expect=401)


def test_lowest_price_and_stock_per_data_center(sandbox):
    query = ('query { gpuTypes(input: {id: "NVIDIA H200"}) { id lowestPrice(input: {gpuCount: %d%s}) '
             "{ stockStatus uninterruptablePrice minimumBidPrice availableGpuCounts } } }")
    everywhere = data(sandbox, query % (1, ""))["gpuTypes"][0]["lowestPrice"]
    assert everywhere == {"stockStatus": "Medium", "uninterruptablePrice": 3.59, "minimumBidPrice": 2.5,
                          "availableGpuCounts": [1, 2, 3, 4]}
    romania = data(sandbox, query % (1, ', dataCenterId: "EU-RO-1", secureCloud: true'))
    assert romania["gpuTypes"][0]["lowestPrice"]["stockStatus"] == "Low"
    assert romania["gpuTypes"][0]["lowestPrice"]["uninterruptablePrice"] == 3.99
    too_many = data(sandbox, query % (3, ', dataCenterId: "EU-RO-1"'))
    assert too_many["gpuTypes"][0]["lowestPrice"]["stockStatus"] is None
    assert data(sandbox, 'query { gpuTypes(input: {id: "nope"}) { id } }') == {"gpuTypes": []}
    dcs = data(sandbox, "query { dataCenters { id storageSupport gpuAvailability { gpuTypeId stockStatus } } }")
    by_id = {d["id"]: d for d in dcs["dataCenters"]}
    assert by_id["US-KS-2"]["storageSupport"] is False
    assert {"gpuTypeId": "NVIDIA A40", "stockStatus": "High"} in by_id["EU-RO-1"]["gpuAvailability"]


def test_spot_pod_bid_and_preemption(sandbox, sandbox_admin):
    spot = ('mutation {{ podRentInterruptable(input: {{ bidPerGpu: {bid}, name: "spot", imageName: "img", '
            'gpuTypeId: "NVIDIA GeForce RTX 4090", gpuCount: 2, cloudType: SECURE, ports: "22/tcp" }}) '
            "{{ id podType costPerHr desiredStatus }} }}")
    low = gql(sandbox, spot.format(bid=0.1))
    assert "below the minimum bid" in low["errors"][0]["message"]
    pod = data(sandbox, spot.format(bid=0.3))["podRentInterruptable"]
    assert pod["podType"] == "INTERRUPTABLE" and pod["costPerHr"] == pytest.approx(0.6)
    query = f'query {{ pod(input: {{podId: "{pod["id"]}"}}) {{ desiredStatus runtime {{ uptimeInSeconds }} }} }}'
    deadline = time.monotonic() + 30
    while data(sandbox, query)["pod"]["runtime"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sandbox_admin.pod_processes(pod["id"])
    sandbox_admin.preempt(pod["id"])
    assert data(sandbox, query)["pod"] == {"desiredStatus": "EXITED", "runtime": None}
    assert sandbox_admin.pod_processes(pod["id"]) == []
    billed = sandbox_admin.billing()[pod["id"]]
    time.sleep(0.2)
    assert sandbox_admin.billing()[pod["id"]] == billed  # a preempted pod stops billing
    resumed = data(sandbox, f'mutation {{ podBidResume(input: {{podId: "{pod["id"]}", bidPerGpu: 0.5, '
                            "gpuCount: 2}) { desiredStatus costPerHr } }")
    assert resumed["podBidResume"] == {"desiredStatus": "RUNNING", "costPerHr": 1.0}


def test_on_demand_pods_are_not_preempted(sandbox, sandbox_admin):
    pod = data(sandbox, DEPLOY.format(name="od", gpu="NVIDIA A40", dc='"US-TX-3"'))["podFindAndDeployOnDemand"]
    assert pod["machine"]["dataCenterId"] == "US-TX-3" and pod["env"] == ["A=1"]
    with pytest.raises(Exception, match="409"):
        sandbox_admin.preempt(pod["id"])


def test_volumes_templates_user_settings_and_edits(sandbox):
    vol = data(sandbox, 'mutation { createNetworkVolume(input: {name: "v", size: 10, dataCenterId: "US-TX-3"}) '
                        "{ id size dataCenterId } }")["createNetworkVolume"]
    grown = data(sandbox, f'mutation {{ updateNetworkVolume(input: {{id: "{vol["id"]}", size: 25}}) {{ size }} }}')
    assert grown["updateNetworkVolume"]["size"] == 25
    shrink = gql(sandbox, f'mutation {{ updateNetworkVolume(input: {{id: "{vol["id"]}", size: 5}}) {{ size }} }}')
    assert "only grow" in shrink["errors"][0]["message"]
    data(sandbox, f'mutation {{ deleteNetworkVolume(input: {{id: "{vol["id"]}"}}) }}')
    assert data(sandbox, "query { myself { networkVolumes { id } } }")["myself"]["networkVolumes"] == []

    save = ('mutation { saveTemplate(input: { containerDiskInGb: 10, dockerArgs: "", env: [{key: "K", value: "V"}], '
            'imageName: "img", name: "tpl", ports: "22/tcp", volumeInGb: 20, volumeMountPath: "/workspace", '
            'isServerless: false, containerRegistryAuthId : "", startSsh: true, isPublic: false, readme: "" }) '
            "{ id name imageName ports env { key value } volumeInGb isServerless } }")
    tpl = data(sandbox, save)["saveTemplate"]
    assert tpl["env"] == [{"key": "K", "value": "V"}] and tpl["volumeInGb"] == 20 and tpl["ports"] == "22/tcp"
    assert data(sandbox, "query { myself { podTemplates { id } } }")["myself"]["podTemplates"] == [{"id": tpl["id"]}]
    twin = data(sandbox, save)["saveTemplate"]  # names need not be unique (RunPod forces nothing; issue 18)
    assert twin["id"] != tpl["id"]
    data(sandbox, 'mutation { deleteTemplate(templateName: "tpl") }')  # the oldest of that name
    assert data(sandbox, "query { myself { podTemplates { id } } }")["myself"]["podTemplates"] == [{"id": twin["id"]}]
    data(sandbox, 'mutation { deleteTemplate(templateName: "tpl") }')
    assert data(sandbox, "query { myself { podTemplates { id } } }")["myself"]["podTemplates"] == []

    keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA one@x\\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB two@x"
    user = data(sandbox, f'mutation {{ updateUserSettings(input: {{pubKey: "{keys}"}}) {{ id pubKey }} }}')
    assert user["updateUserSettings"]["pubKey"].splitlines() == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA one@x",
                                                                 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB two@x"]
    rest = httpx.get(sandbox.rest_url + "/account/ssh-keys", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert len(rest.json()["keys"]) == 2

    pod = data(sandbox, DEPLOY.format(name="edit", gpu="NVIDIA A40", dc="null"))["podFindAndDeployOnDemand"]
    edited = data(sandbox, f'mutation {{ podEditJob(input: {{podId: "{pod["id"]}", imageName: "img:2", '
                           'containerDiskInGb: 50, env: [{key: "A", value: "2"}]}) { imageName env } }')
    assert edited["podEditJob"] == {"imageName": "img:2", "env": ["A=2"]}


def test_pod_scoped_key(sandbox, sandbox_admin):
    ids = [data(sandbox, DEPLOY.format(name=n, gpu="NVIDIA A40", dc="null"))["podFindAndDeployOnDemand"]["id"]
           for n in ("mine", "other")]
    key = next(p["api_key"] for p in sandbox_admin.pods() if p["id"] == ids[0])
    own = data(sandbox, f'query {{ pod(input: {{podId: "{ids[0]}"}}) {{ id }} }}', key=key)
    assert own == {"pod": {"id": ids[0]}}
    for query in (f'query {{ pod(input: {{podId: "{ids[1]}"}}) {{ id }} }}', "query { myself { id } }",
                  f'mutation {{ podTerminate(input: {{podId: "{ids[1]}"}}) }}',
                  DEPLOY.format(name="x", gpu="NVIDIA A40", dc="null")):
        assert "access denied" in gql(sandbox, query, key=key)["errors"][0]["message"]
    data(sandbox, f'mutation {{ podTerminate(input: {{podId: "{ids[0]}"}}) }}', key=key)
    gql(sandbox, "query { gpuTypes { id } }", key=key, expect=401)  # a terminated pod's key is dead
    statuses = {p["id"]: p["status"] for p in sandbox_admin.pods()}
    assert statuses[ids[0]] == "TERMINATED" and statuses[ids[1]] != "TERMINATED"
