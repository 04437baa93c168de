"""The sandbox as clients we did not write see it (issue 18): one test per difference those clients hit.

Written from a typed client's side, not our adapter's: what a Go-like decoder accepts (an `int` field takes `31`,
never `31.0`), what a client that passes a start command expects to find in the pod, what `hostname` says.
Upstream sources held to here:
- runpod/pulumi-runpod `provider/pkg/runpod/schema.graphql` @ 8a7e9d4a67670f85413e21621808596216d509a4 (types and
  nullability of the GraphQL fields served; see pistachio_infra/sandbox/schema.graphql);
- runpod/runpodctl's GraphQL client (`myself { … notifyPodsStale notifyPodsGeneral notifyLowBalance }` into Go
  bools, `podTemplates(input: $input)` with `{isRunpod: false}`, pod fields into Go ints);
- runpod/containers `official-templates/base/Dockerfile` (`CMD ["/start.sh"]`) and `container-template/start.sh`
  (sshd from PUBLIC_KEY) @ 6990d3773d180d0270d534a6e532c997dc629060: a start command replaces /start.sh;
- RunPod's REST v2 OpenAPI document (pistachio_infra/sandbox/openapi-v2.json): catalog filters, billing windows,
  SSH-key pattern (ECMA-262), template names (no uniqueness asked).
"""

from __future__ import annotations

import json
from contextlib import closing

import httpx
import paramiko
import pytest

from tests.helpers import wait_until

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
POD_FIELDS = ("id name machineId imageName dockerArgs gpuCount vcpuCount memoryInGb containerDiskInGb volumeInGb "
              "volumeMountPath desiredStatus costPerHr env ports port templateId networkVolumeId podType")


def gql(info, query: str, variables: dict | None = None) -> dict:
    resp = httpx.post(info.graphql_base + "/graphql", json={"query": query, "variables": variables},
                      headers={"Authorization": f"Bearer {info.api_key}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = json.loads(resp.text)  # the raw JSON text decides int vs float, as in Go
    assert "errors" not in body, body
    return body["data"]


def rest(info, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, info.rest_url + path, headers={"Authorization": f"Bearer {info.api_key}"},
                         timeout=30, **kw)


def deploy(info, name: str, extra: str = "") -> dict:
    query = (f'mutation {{ podFindAndDeployOnDemand(input: {{ name: "{name}", imageName: "{IMAGE}", '
             f'cloudType: SECURE, gpuTypeId: "NVIDIA A40", gpuCount: 1, ports: "22/tcp" {extra} }}) '
             f"{{ {POD_FIELDS} }} }}")
    return gql(info, query)["podFindAndDeployOnDemand"]


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- GraphQL shapes ------------------------------------------------------------------------------------------


def test_pod_numbers_decode_into_integers(sandbox):
    pod = deploy(sandbox, "typed", 'volumeInGb: 0, volumeMountPath: "/runpod-volume", minMemoryInGb: 31')
    for field in ("memoryInGb", "vcpuCount", "volumeInGb", "gpuCount", "containerDiskInGb"):
        assert is_int(pod[field]), (field, pod[field])
    assert pod["memoryInGb"] == 31 and pod["volumeInGb"] == 0
    listed = gql(sandbox, f"query {{ myself {{ pods {{ {POD_FIELDS} }} }} }}")["myself"]["pods"]
    assert all(is_int(p["memoryInGb"]) and is_int(p["vcpuCount"]) and is_int(p["volumeInGb"]) for p in listed)
    # fractional values stay fractional (a Float is still a Float)
    assert isinstance(pod["costPerHr"], float)


def test_volume_mount_path_is_echoed_as_sent(sandbox):
    pod = deploy(sandbox, "mounts", 'volumeInGb: 0, volumeMountPath: "/runpod-volume"')
    assert pod["volumeMountPath"] == "/runpod-volume"
    again = gql(sandbox, f'query {{ pod(input: {{podId: "{pod["id"]}"}}) {{ volumeMountPath }} }}')["pod"]
    assert again["volumeMountPath"] == "/runpod-volume"


def test_runpodctl_account_and_template_queries(sandbox):
    me = gql(sandbox, "query { myself { id email clientBalance spendLimit currentSpendPerHr "
                      "notifyPodsStale notifyPodsGeneral notifyLowBalance } }")["myself"]
    assert all(isinstance(me[f], bool) for f in ("notifyPodsStale", "notifyPodsGeneral", "notifyLowBalance"))
    public = {"name": "shared", "image": IMAGE, "public": True}
    assert rest(sandbox, "POST", "/templates", json=public).status_code == 201
    query = ("query PodTemplates($input: PodTemplateInput) { podTemplates(input: $input) { id name imageName "
             "isServerless isPublic isRunpod category containerDiskInGb volumeInGb volumeMountPath } }")
    community = gql(sandbox, query, {"input": {"isRunpod": False}})["podTemplates"]
    assert [t["name"] for t in community] == ["shared"] and community[0]["isRunpod"] is False
    assert gql(sandbox, query, {"input": {"isRunpod": True}})["podTemplates"] == []
    one = gql(sandbox, "query T($id: String!) { podTemplate(id: $id) { id name } }", {"id": community[0]["id"]})
    assert one["podTemplate"]["name"] == "shared"


# Field -> type of the types we serve, as runpod/pulumi-runpod provider/pkg/runpod/schema.graphql @ 8a7e9d4a67670f8
# gives them (read there, written out here).
UPSTREAM = {
    "Pod": {"id": "String!", "name": "String!", "machineId": "String!", "imageName": "String", "dockerArgs": "String",
            "gpuCount": "Int!", "vcpuCount": "Float!", "memoryInGb": "Float!", "containerDiskInGb": "Int",
            "volumeInGb": "Float", "volumeMountPath": "String", "desiredStatus": "PodStatus!", "costPerHr": "Float!",
            "env": "[String]", "ports": "String", "templateId": "String", "networkVolumeId": "String",
            "containerRegistryAuthId": "String", "podType": "PodType", "port": "Port"},
    "User": {"endpoints": "[Endpoint]!", "networkVolumes": "[NetworkVolume]",
             "containerRegistryCreds": "[ContainerRegistryAuth]", "podTemplates": "[PodTemplate]",
             "secrets": "[Secret!]!"},
    "PodTemplate": {"id": "String", "name": "String", "imageName": "String", "dockerArgs": "String",
                    "env": "[EnvironmentVariable]", "ports": "String", "portsConfig": "[PortConfig]",
                    "volumeMountPath": "String", "volumeInGb": "Int", "containerDiskInGb": "Int",
                    "containerRegistryAuthId": "String", "startJupyter": "Boolean", "startSsh": "Boolean",
                    "startScript": "String", "isServerless": "Boolean", "isPublic": "Boolean", "readme": "String",
                    "advancedStart": "Boolean", "category": "String"},
    "GpuType": {"id": "String", "displayName": "String", "manufacturer": "String", "memoryInGb": "Int",
                "cudaCores": "Int", "secureCloud": "Boolean", "communityCloud": "Boolean", "securePrice": "Float",
                "communityPrice": "Float", "communitySpotPrice": "Float", "secureSpotPrice": "Float",
                "maxGpuCount": "Int", "maxGpuCountCommunityCloud": "Int", "maxGpuCountSecureCloud": "Int",
                "minPodGpuCount": "Int", "lowestPrice": "LowestPrice"},
    "LowestPrice": {"gpuName": "String", "gpuTypeId": "String", "minimumBidPrice": "Float",
                    "uninterruptablePrice": "Float", "clusterPrice": "Float", "minMemory": "Int", "minVcpu": "Int",
                    "rentalPercentage": "Float", "rentedCount": "Int", "totalCount": "Int", "stockStatus": "String",
                    "minDownload": "Int", "minDisk": "Int", "minUpload": "Int", "countryCode": "String",
                    "supportPublicIp": "Boolean", "compliance": "[Compliance]", "maxGpuCount": "Int",
                    "maxUnreservedGpuCount": "Int", "availableGpuCounts": "[Int]",
                    "gpuTypeDatacenters": "[GpuTypeDataCenterAvailability]"},
    "NetworkVolume": {"id": "String", "name": "String", "size": "Int", "dataCenterId": "String",
                      "storageClusterId": "String", "storageType": "StorageType"},
    "DataCenter": {"id": "String", "name": "String", "location": "String", "listed": "Boolean",
                   "storageSupport": "Boolean", "globalNetwork": "Boolean", "region": "DataCenterRegion",
                   "compliance": "[Compliance]", "gpuAvailability": "[GpuAvailability]"},
    "GpuAvailability": {"available": "Boolean", "stockStatus": "String", "gpuTypeId": "String",
                        "gpuTypeDisplayName": "String", "displayName": "String", "id": "String"},
    "Query": {"gpuTypes": "[GpuType]", "cpuFlavors": "[CpuFlavor]", "dataCenters": "[DataCenter]", "pod": "Pod",
              "myself": "User"},
}


def test_every_field_of_the_served_types_is_served(sandbox):
    """The fields RunPod's schema gives our types all exist here with its types; non-null ones are never null."""
    from graphql import build_schema

    from pistachio_infra.sandbox.graphql_api import SCHEMA_PATH

    ours = build_schema(SCHEMA_PATH.read_text())
    for type_name, fields in UPSTREAM.items():
        mine = ours.get_type(type_name).fields
        for name, type_ in fields.items():
            assert name in mine, f"{type_name}.{name} is in RunPod's schema but not served"
            assert str(mine[name].type) == type_, (type_name, name, str(mine[name].type))
    pod = deploy(sandbox, "nonnull")
    assert all(pod[f] is not None for f in ("id", "name", "machineId", "gpuCount", "vcpuCount", "memoryInGb",
                                             "desiredStatus", "costPerHr"))
    me = gql(sandbox, "query { myself { endpoints { id } secrets { id } containerRegistryCreds { id } } }")
    assert me["myself"] == {"endpoints": [], "secrets": [], "containerRegistryCreds": []}


# --- the pod's processes -------------------------------------------------------------------------------------


def _ssh(port: int, key: paramiko.PKey, command: str) -> str:
    with closing(paramiko.SSHClient()) as client:
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect("127.0.0.1", port=port, username=None, pkey=key, timeout=5, banner_timeout=5,
                       auth_timeout=5, allow_agent=False, look_for_keys=False)
        _, out, _ = client.exec_command(command, timeout=20)
        return out.read().decode().strip()


def _ssh_port(info, pod_id: str) -> int | None:
    pod = rest(info, "GET", f"/pods/{pod_id}").json()
    direct = (pod.get("ssh") or {}).get("direct") or {}
    return direct.get("port")


def _wait_ssh(info, pod_id: str, key: paramiko.PKey, command: str) -> str:
    def attempt():
        port = _ssh_port(info, pod_id)
        if not port:
            return None
        try:
            return _ssh(port, key, command) or None
        except (OSError, paramiko.SSHException):
            return None

    return wait_until(attempt, 120, f"SSH into pod {pod_id}")


@pytest.fixture
def user_key(tmp_path):
    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if key is None:
        import subprocess

        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
        key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "k"))
    return key, f"{key.get_name()} {key.get_base64()}"


def _create(info, name: str, public: str, args: str | None = None) -> str:
    body = {"name": name, "image": IMAGE, "gpu": {"id": "NVIDIA A40"}, "ports": ["22/tcp"],
            "env": {"PUBLIC_KEY": public, "MARK": "from-env"}}
    if args is not None:
        body["args"] = args
    resp = rest(info, "POST", "/pods", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_two_pods_have_their_own_hostnames(sandbox, user_key):
    key, public = user_key
    ids = [_create(sandbox, f"host{i}", public) for i in range(2)]
    names = [_wait_ssh(sandbox, pod_id, key, "cat /proc/sys/kernel/hostname") for pod_id in ids]
    from pistachio_infra.sandbox.podhost import namespaces_work

    if not namespaces_work():
        pytest.skip("no Linux namespaces here: pods share the host's name")
    assert names == ids


def test_start_command_is_the_pod_process_and_can_chain_the_default_start(sandbox, user_key, tmp_path):
    """What SkyPilot and a pod-side guard do: a start command that does its own setup, then runs the image's
    default start (`exec /start.sh`, announced as $PISTACHIO_START_SH); its effects are visible over SSH."""
    key, public = user_key
    args = ("bash -c 'echo \"$MARK $RUNPOD_POD_ID\" > \"$PISTACHIO_WORKSPACE/guard.txt\"; "
            "sleep 600 & exec \"$PISTACHIO_START_SH\"'")
    pod_id = _create(sandbox, "guarded", public, args)
    seen = _wait_ssh(sandbox, pod_id, key, 'cat "$PISTACHIO_WORKSPACE/guard.txt"; pgrep -x sleep >/dev/null && '
                                           'echo guard-alive')
    assert seen.splitlines() == [f"from-env {pod_id}", "guard-alive"]
    gql_pod = gql(sandbox, f'query {{ pod(input: {{podId: "{pod_id}"}}) {{ dockerArgs }} }}')["pod"]
    assert gql_pod["dockerArgs"] == args


def test_start_command_replaces_the_default_start(sandbox, user_key):
    """Without the default start nothing starts sshd: the pod runs (RUNNING) but SSH is never answered."""
    key, public = user_key
    pod_id = _create(sandbox, "nossh", public, "sleep 600")
    wait_until(lambda: rest(sandbox, "GET", f"/pods/{pod_id}").json()["status"] == "RUNNING", 120,
               "the pod to run")
    port = wait_until(lambda: _ssh_port(sandbox, pod_id), 60, "the pod's ports")
    with pytest.raises((OSError, paramiko.SSHException)):
        _ssh(port, key, "true")


# --- REST v2 details -----------------------------------------------------------------------------------------


def test_billing_windows_are_bounded_and_checked(sandbox):
    absurd = rest(sandbox, "GET", "/billing/pods", params={"bucketSize": "hour", "lastN": "99999999999"})
    assert absurd.status_code == 400 and absurd.headers["content-type"].startswith("application/problem+json")
    backwards = rest(sandbox, "GET", "/billing/pods", params={"startTime": "2026-02-01T00:00:00Z",
                                                              "endTime": "2026-01-01T00:00:00Z"})
    assert backwards.status_code == 400
    early = rest(sandbox, "GET", "/billing/pods", params={"startTime": "0999-03-04T00:00:00Z",
                                                          "endTime": "0999-03-05T00:00:00Z"})
    assert early.status_code == 200 and early.json()["metadata"]["query"]["startTime"] == "0999-03-04T00:00:00Z"
    many = rest(sandbox, "GET", "/billing/pods", params={"bucketSize": "day", "lastN": "100000"})
    assert many.status_code == 200


def test_gpu_catalog_honours_cloud_country_and_cuda(sandbox):
    base = {"include": "AVAILABILITY", "product": "POD"}
    assert rest(sandbox, "GET", "/catalog/gpus", params={**base, "cloud": "BOGUS"}).status_code in (400, 422)
    assert rest(sandbox, "GET", "/catalog/gpus", params={"cloud": "SECURE"}).status_code == 400
    secure = {g["id"]: g for g in rest(sandbox, "GET", "/catalog/gpus",
                                       params={**base, "cloud": "SECURE"}).json()["gpus"]}
    community = {g["id"]: g for g in rest(sandbox, "GET", "/catalog/gpus",
                                          params={**base, "cloud": "COMMUNITY"}).json()["gpus"]}
    assert secure["NVIDIA H200"]["availability"] != "NONE" and community["NVIDIA H200"]["availability"] == "NONE"
    assert secure["NVIDIA GeForce RTX 4090"].get("dataCenters") != community["NVIDIA GeForce RTX 4090"].get(
        "dataCenters")
    romania = rest(sandbox, "GET", "/catalog/gpus", params={**base, "countryCodes": "RO"}).json()["gpus"]
    assert romania and all(dc["id"] == "EU-RO-1" for g in romania for dc in g.get("dataCenters", []))
    assert rest(sandbox, "GET", "/catalog/gpus", params={**base, "countryCodes": "ro"}).status_code == 422
    new_cuda = rest(sandbox, "GET", "/catalog/gpus/NVIDIA A40", params={**base, "minCudaVersion": "12.8"}).json()
    assert {dc["id"] for dc in new_cuda.get("dataCenters", [])} <= {"US-TX-3", "US-KS-2"}
    exact = rest(sandbox, "GET", "/catalog/gpus/NVIDIA A40", params={**base, "cudaVersions": "12.4"}).json()
    assert [v["version"] for v in exact["cudaVersions"]] == ["12.4"]
    both = {**base, "cudaVersions": "12.4", "minCudaVersion": "12"}
    assert rest(sandbox, "GET", "/catalog/gpus", params=both).status_code == 400
    assert rest(sandbox, "GET", "/catalog/gpus", params={"minCudaVersion": "12"}).status_code == 400


def test_community_pods_take_community_stock(sandbox):
    body = {"name": "c", "image": IMAGE, "gpu": {"id": "NVIDIA H200"}, "cloud": "COMMUNITY"}
    assert rest(sandbox, "POST", "/pods", json=body).status_code == 400  # not offered in community cloud
    body["gpu"] = {"id": "NVIDIA GeForce RTX 4090"}
    pod = rest(sandbox, "POST", "/pods", json=body).json()
    assert pod["dataCenterId"] in ("US-TX-3", "EU-RO-1", "US-KS-2")


def test_405_names_every_allowed_method(sandbox):
    resp = rest(sandbox, "POST", "/account/ssh-keys")
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} >= {"GET", "PUT"}
    resp = rest(sandbox, "PUT", "/pods/abc")
    assert {m.strip() for m in resp.headers["allow"].split(",")} >= {"GET", "PATCH", "DELETE"}


def test_ssh_key_pattern_has_ecma_semantics(sandbox):
    good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me@x"
    assert rest(sandbox, "PUT", "/account/ssh-keys", json={"keys": [good]}).status_code == 200
    # ECMA `$` does not match before a final newline (Python's does), and U+FEFF is ECMA whitespace
    for bad in (good + "\n", "ssh-ed25519 AAAA\ufeff"):
        assert rest(sandbox, "PUT", "/account/ssh-keys", json={"keys": [bad]}).status_code == 422, repr(bad)


def test_request_log_records_requests_without_keys(sandbox_factory, monkeypatch, tmp_path):
    monkeypatch.setenv("PISTACHIO_SANDBOX_LOG_REQUESTS", "1")
    info = sandbox_factory()
    gql(info, "query whoami { myself { id } }")
    rest(info, "GET", "/pods")
    httpx.post(info.graphql_base + "/graphql", params={"api_key": info.api_key}, json={"query": "{ myself { id } }"})
    text = wait_until(lambda: (t := (info.home / "server.log").read_text()) and "GET /v2/pods" in t and
                      "anonymous" in t and t, 30, "request lines in server.log")
    assert "query whoami(myself) -> 200" in text
    assert info.api_key not in text and "Bearer" not in text
