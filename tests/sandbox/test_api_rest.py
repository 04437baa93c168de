"""REST v2 of the sandbox against RunPod's official OpenAPI document: every answer validates against the spec's
response schema for its operation and status, errors are problem+json with the real codes, and authenticated
answers carry RateLimit headers."""

from __future__ import annotations

import subprocess
import time
from urllib.parse import quote

import httpx
import pytest

from pistachio_infra.sandbox import openapi
from pistachio_infra.sandbox.podhost import pod_user

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


class Rest:
    """httpx against the sandbox that checks every answer against the spec (operation path = `spec_path`)."""

    def __init__(self, info, key: str | None = None) -> None:
        self.base = info.rest_url.removesuffix("/v2")
        self.key = info.api_key if key is None else key

    def call(self, method: str, path: str, spec_path: str | None = None, *, expect: int, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        resp = httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)
        assert resp.status_code == expect, (resp.status_code, resp.text)
        body = resp.json() if resp.content else None
        if resp.status_code >= 400:
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert body["status"] == resp.status_code and body["title"] and body["detail"]
        problems = openapi.validate_response(method, spec_path or path, resp.status_code, body)
        assert problems == [], problems
        if resp.status_code != 401:
            assert resp.headers["RateLimit-Policy"].startswith('"minute";q=')
            assert '"minute";r=' in resp.headers["RateLimit"]
        return resp

    def pod(self, pod_id: str) -> dict:
        return self.call("GET", f"/v2/pods/{pod_id}", "/v2/pods/{id}", expect=200).json()

    def wait(self, pod_id: str, status: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            pod = self.pod(pod_id)
            if pod["status"] == status:
                return pod
            assert time.monotonic() < deadline, f"pod {pod_id} stuck in {pod['status']} (wanted {status})"
            time.sleep(0.05)


def create_body(name: str = "pod-a", gpu: str = "NVIDIA A40", **extra) -> dict:
    return {"name": name, "image": IMAGE, "gpu": {"id": gpu, "count": 1}, "ports": ["22/tcp", "8888/http"],
            "env": {"STAGE": "one"}, **extra}


def test_pod_lifecycle_conforms(sandbox, sandbox_admin):
    rest = Rest(sandbox)
    created = rest.call("POST", "/v2/pods", json=create_body(), expect=201).json()
    assert created["status"] == "PROVISIONING" and created["runtime"] is None and created["ssh"]["direct"] is None
    assert created["actions"] == ["stop", "terminate"] and created["cost"] == 0.40
    pod_id = created["id"]
    assert len(pod_id) == 14 and pod_id.isalnum()

    listed = rest.call("GET", "/v2/pods", expect=200).json()["pods"]
    assert [p["id"] for p in listed] == [pod_id]

    running = rest.wait(pod_id, "RUNNING")
    direct = running["ssh"]["direct"]
    assert direct["host"] == "127.0.0.1" and direct["username"] == "root"
    assert {"private": 22, "public": direct["port"], "type": "tcp", "ip": "127.0.0.1"} in running["runtime"]["ports"]
    assert running["actions"] == ["stop", "restart", "terminate"] and running["startedAt"]

    rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "start"}, expect=409)
    patched = rest.call("PATCH", f"/v2/pods/{pod_id}", "/v2/pods/{id}", json={"env": {"STAGE": "two"}},
                        expect=200).json()
    assert patched["env"] == {"STAGE": "two"} and patched["status"] != "RUNNING"  # editing env resets the pod
    rest.wait(pod_id, "RUNNING")

    stopped = rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "stop"},
                        expect=200).json()
    assert stopped["status"] == "EXITED" and stopped["cost"] == 0 and stopped["runtime"] is None
    assert sandbox_admin.pod_processes(pod_id) == []
    rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "stop"}, expect=409)
    rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "start"}, expect=200)
    restarted = rest.wait(pod_id, "RUNNING")
    again = rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "restart"},
                      expect=200).json()
    assert again["status"] != "RUNNING" and again["runtime"] is None  # the container restarts in place
    assert rest.wait(pod_id, "RUNNING")["startedAt"] >= restarted["startedAt"]

    resp = rest.call("POST", f"/v2/pods/{pod_id}/action", "/v2/pods/{id}/action", json={"action": "terminate"},
                     expect=204)
    assert resp.content == b""
    rest.call("GET", f"/v2/pods/{pod_id}", "/v2/pods/{id}", expect=404)
    assert rest.call("GET", "/v2/pods", expect=200).json()["pods"] == []
    rest.call("DELETE", f"/v2/pods/{pod_id}", "/v2/pods/{id}", expect=404)


def test_delete_terminates(sandbox, sandbox_admin):
    rest = Rest(sandbox)
    pod_id = rest.call("POST", "/v2/pods", json=create_body(), expect=201).json()["id"]
    rest.wait(pod_id, "RUNNING")
    pids = sandbox_admin.pod_processes(pod_id)
    assert pids
    rest.call("DELETE", f"/v2/pods/{pod_id}", "/v2/pods/{id}", expect=204)
    assert sandbox_admin.pod_processes(pod_id) == []
    assert [p["status"] for p in sandbox_admin.pods()] == ["TERMINATED"]


def test_schema_violations_are_422_with_every_error(sandbox):
    rest = Rest(sandbox)
    bad = rest.call("POST", "/v2/pods", json={"name": "", "gpu": {"id": "NVIDIA A40", "count": 0}, "bogus": 1},
                    expect=422).json()
    text = "\n".join(bad["errors"])
    assert "bogus" in text and "count" in text and "image" in text
    rest.call("POST", "/v2/network-volumes", json={"name": "v", "size": 5, "dataCenter": "US-TX-3"}, expect=422)
    rest.call("POST", "/v2/pods/x/action", "/v2/pods/{id}/action", json={"action": "explode"}, expect=422)
    rest.call("PUT", "/v2/account/ssh-keys", json={"keys": ["not a key"]}, expect=422)


def test_rules_are_400(sandbox):
    rest = Rest(sandbox)
    both = create_body(cpu={"id": "cpu3c", "vcpuCount": 2})
    assert "exactly one" in rest.call("POST", "/v2/pods", json=both, expect=400).json()["detail"]
    unknown = rest.call("POST", "/v2/pods", json=create_body(gpu="NVIDIA Z9000"), expect=400).json()
    assert "NVIDIA Z9000" in unknown["detail"]
    cuda = create_body()
    cuda["gpu"] |= {"allowedCudaVersions": ["12.8"], "minCudaVersion": "12.1"}
    rest.call("POST", "/v2/pods", json=cuda, expect=400)
    rest.call("POST", "/v2/pods", json=create_body(dataCenterIds=["MARS-1"]), expect=400)


def test_auth_401_and_unknown_routes_are_json(sandbox):
    rest = Rest(sandbox, key="")
    assert rest.call("GET", "/v2/pods", expect=401).json()["detail"] == "missing bearer token"
    assert Rest(sandbox, key="rpa_WRONG").call("GET", "/v2/pods", expect=401).json()["detail"] == "invalid api key"
    resp = httpx.get(sandbox.rest_url + "/nothing-here", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
    resp = httpx.put(sandbox.rest_url + "/pods", headers={"Authorization": f"Bearer {sandbox.api_key}"})
    assert resp.status_code == 405 and resp.json()["status"] == 405


def test_catalog_gpus_and_datacenters(sandbox):
    rest = Rest(sandbox)
    gpus = rest.call("GET", "/v2/catalog/gpus", expect=200).json()["gpus"]
    ids = {g["id"] for g in gpus}
    for needed in ("NVIDIA RTX A6000", "NVIDIA A40", "NVIDIA L40S", "NVIDIA GeForce RTX 4090",
                   "NVIDIA GeForce RTX 3090", "NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB",
                   "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200"):
        assert needed in ids
    assert all("availability" not in g for g in gpus)
    rest.call("GET", "/v2/catalog/gpus?include=AVAILABILITY", "/v2/catalog/gpus", expect=400)
    full = rest.call("GET", "/v2/catalog/gpus?include=AVAILABILITY&product=POD", "/v2/catalog/gpus",
                     expect=200).json()["gpus"]
    a40 = next(g for g in full if g["id"] == "NVIDIA A40")
    assert a40["price"]["secure"] == 0.40 and a40["memory"] == 48
    assert {d["id"]: d["availability"] for d in a40["dataCenters"]} == {"US-TX-3": "MEDIUM", "EU-RO-1": "HIGH"}
    one = rest.call("GET", f"/v2/catalog/gpus/{quote('NVIDIA H200')}?include=AVAILABILITY&product=POD&count=3",
                    "/v2/catalog/gpus/{id}", expect=200).json()
    assert [d["id"] for d in one["dataCenters"]] == ["US-TX-3"]  # EU-RO-1 has only 2 free
    rest.call("GET", f"/v2/catalog/gpus/{quote('NVIDIA Z9000')}", "/v2/catalog/gpus/{id}", expect=404)

    dcs = rest.call("GET", "/v2/catalog/datacenters?include=GPU_AVAILABILITY", "/v2/catalog/datacenters",
                    expect=200).json()["dataCenters"]
    assert {"US-TX-3", "EU-RO-1", "CA-MTL-1"} <= {d["id"] for d in dcs}
    europe = rest.call("GET", "/v2/catalog/datacenters?regions=EUROPE", "/v2/catalog/datacenters",
                       expect=200).json()["dataCenters"]
    assert [d["id"] for d in europe] == ["EU-RO-1"]


def test_stock_follows_pods(sandbox):
    rest = Rest(sandbox)
    url = f"/v2/catalog/gpus/{quote('NVIDIA H100 PCIe')}?include=AVAILABILITY&product=POD"

    def levels() -> dict[str, str]:
        gpu = rest.call("GET", url, "/v2/catalog/gpus/{id}", expect=200).json()
        return {d["id"]: d["availability"] for d in gpu.get("dataCenters", [])}

    assert levels() == {"US-TX-3": "LOW", "EU-RO-1": "LOW", "CA-MTL-1": "LOW"}
    body = create_body(gpu="NVIDIA H100 PCIe", dataCenterIds=["EU-RO-1"])
    pod = rest.call("POST", "/v2/pods", json=body, expect=201).json()
    assert pod["dataCenterId"] == "EU-RO-1"
    assert "EU-RO-1" not in levels()
    no_capacity = rest.call("POST", "/v2/pods", json=body, expect=400).json()
    assert "no longer any instances available" in no_capacity["detail"]
    rest.call("POST", f"/v2/pods/{pod['id']}/action", "/v2/pods/{id}/action", json={"action": "terminate"},
              expect=204)
    assert "EU-RO-1" in levels()


def test_network_volumes_pin_pods_to_their_data_center(sandbox, sandbox_admin):
    rest = Rest(sandbox)
    vol = rest.call("POST", "/v2/network-volumes", json={"name": "cache", "size": 50, "dataCenter": "EU-RO-1"},
                    expect=201).json()
    assert vol["dataCenter"] == "EU-RO-1" and vol["type"] == "STANDARD" and len(vol["id"]) == 10
    assert rest.call("GET", "/v2/network-volumes", expect=200).json()["networkVolumes"] == [vol]
    assert rest.call("GET", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}", expect=200).json() == vol
    rest.call("PATCH", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}", json={"size": 40},
              expect=400)
    grown = rest.call("PATCH", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}",
                      json={"size": 60, "name": "cache2"}, expect=200).json()
    assert (grown["size"], grown["name"]) == (60, "cache2")
    rest.call("POST", "/v2/network-volumes", json={"name": "x", "size": 10, "dataCenter": "US-KS-2"}, expect=400)

    mount = {"network": [{"volumeId": vol["id"], "path": "/workspace"}]}
    wrong = rest.call("POST", "/v2/pods", json=create_body(mounts=mount, dataCenterIds=["US-TX-3"]), expect=400)
    assert "EU-RO-1" in wrong.json()["detail"]
    pod = rest.call("POST", "/v2/pods", json=create_body(mounts=mount), expect=201).json()
    assert pod["dataCenterId"] == "EU-RO-1" and pod["mounts"] == mount
    raw = next(p for p in sandbox_admin.pods() if p["id"] == pod["id"])
    assert raw["workspace"].endswith(f"volumes/{vol['id']}")
    rest.call("DELETE", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}", expect=409)
    rest.call("DELETE", f"/v2/pods/{pod['id']}", "/v2/pods/{id}", expect=204)
    rest.call("DELETE", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}", expect=204)
    rest.call("GET", f"/v2/network-volumes/{vol['id']}", "/v2/network-volumes/{id}", expect=404)


def test_templates_crud_and_create_from_template(sandbox):
    rest = Rest(sandbox)
    body = {"name": "trainer", "image": IMAGE, "ports": ["22/tcp"], "env": {"A": "1", "B": "2"},
            "mounts": {"persistent": {"size": 20, "path": "/workspace"}}, "disk": 40}
    tpl = rest.call("POST", "/v2/templates", json=body, expect=201).json()
    assert tpl["startSsh"] is True and tpl["category"] == "NVIDIA" and tpl["disk"] == 40
    twin = rest.call("POST", "/v2/templates", json=body, expect=201).json()  # names need not be unique (spec)
    assert rest.call("GET", "/v2/templates", expect=200).json()["templates"] == [tpl, twin]
    rest.call("DELETE", f"/v2/templates/{twin['id']}", "/v2/templates/{id}", expect=204)
    changed = rest.call("PATCH", f"/v2/templates/{tpl['id']}", "/v2/templates/{id}", json={"env": {"A": "9"}},
                        expect=200).json()
    assert changed["env"] == {"A": "9"} and changed["image"] == IMAGE

    pod = rest.call("POST", "/v2/pods", json={"name": "from-tpl", "templateId": tpl["id"],
                                              "gpu": {"id": "NVIDIA A40"}, "env": {"C": "3"}}, expect=201).json()
    assert pod["image"] == IMAGE and pod["env"] == {"A": "9", "C": "3"} and pod["disk"] == 40
    assert pod["template"] is None and pod["mounts"] == {"persistent": {"size": 20, "path": "/workspace"}}
    missing = {"name": "x", "templateId": "nope", "gpu": {"id": "NVIDIA A40"}}
    rest.call("POST", "/v2/pods", json=missing, expect=404)

    rest.call("DELETE", f"/v2/templates/{tpl['id']}", "/v2/templates/{id}", expect=204)
    rest.call("GET", f"/v2/templates/{tpl['id']}", "/v2/templates/{id}", expect=404)


def test_registered_ssh_keys_reach_pods_with_start_ssh(sandbox, tmp_path):
    rest = Rest(sandbox)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text().strip()
    assert rest.call("GET", "/v2/account/ssh-keys", expect=200).json() == {"keys": []}
    assert rest.call("PUT", "/v2/account/ssh-keys", json={"keys": [pub]}, expect=200).json() == {"keys": [pub]}
    pod = rest.call("POST", "/v2/pods", json=create_body(startSsh=True), expect=201).json()
    port = rest.wait(pod["id"], "RUNNING")["ssh"]["direct"]["port"]
    out = subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"{pod_user()}@127.0.0.1",
         'echo "$RUNPOD_POD_ID $RUNPOD_TCP_PORT_22 $RUNPOD_DC_ID $STAGE"; test -f "$PISTACHIO_STANDIN_SCENARIO"'],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [pod["id"], str(port), pod["dataCenterId"], "one"]


def test_billing_accrues_per_second_and_stops(sandbox, sandbox_admin):
    rest = Rest(sandbox)
    pod = rest.call("POST", "/v2/pods", json=create_body(gpu="NVIDIA H200"), expect=201).json()
    time.sleep(0.5)
    first = sandbox_admin.billing()[pod["id"]]
    assert first > 0
    rest.call("POST", f"/v2/pods/{pod['id']}/action", "/v2/pods/{id}/action", json={"action": "terminate"},
              expect=204)
    billed = sandbox_admin.billing()[pod["id"]]
    assert billed > first
    time.sleep(0.3)
    assert sandbox_admin.billing()[pod["id"]] == billed  # terminate stops billing
    report = rest.call("GET", f"/v2/billing/pods?podId={pod['id']}&bucketSize=hour&lastN=2", "/v2/billing/pods",
                       expect=200).json()
    # within the rounding of the stored times
    assert sum(r["totalAmount"] for r in report["records"]) == pytest.approx(billed, rel=1e-4)
    assert report["metadata"]["uniquePodCount"] == 1 and report["metadata"]["query"]["bucketSize"] == "hour"
    rest.call("GET", "/v2/billing/pods?lastN=2&startTime=2026-01-01T00:00:00Z", "/v2/billing/pods", expect=400)
    rest.call("GET", "/v2/billing/pods?bucketSize=decade", "/v2/billing/pods", expect=422)
