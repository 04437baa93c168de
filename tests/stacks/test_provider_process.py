"""The real dynamic-provider runtime without the CLI: `python -m pulumi.dynamic` driven over loopback gRPC the way
the engine drives it (Configure, Check, Create, Read, Diff, Update, Delete with the pickled provider), against the
sandbox. This is the same process `pulumi-resource-pulumi-python` starts under `pulumi up`."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2
from pulumi.runtime.proto.provider_pb2_grpc import ResourceProviderStub

from pistachio_infra.stacks.providers import NetworkVolumeProvider, PodProvider

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


def _struct(props: dict) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(props, {}))


def _dict(struct: struct_pb2.Struct) -> dict:
    return rpc.deserialize_properties(struct)


@pytest.fixture
def engine(sandbox, tmp_path):
    """The provider process, started as the engine starts it (its own cwd, env inherited), and a gRPC stub."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], cwd=tmp_path, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = ResourceProviderStub(channel)
        stub.Configure(provider_pb2.ConfigureRequest(args=_struct({}), acceptSecrets=True), timeout=30)
        yield stub
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _urn(kind: str, name: str) -> str:
    return f"urn:pulumi:test::pistachio-env::pulumi-python:dynamic/runpod:{kind}::{name}"


def test_volume_over_grpc(engine, api, where):
    dc, _, other_dc = where
    blob = serialize_provider(NetworkVolumeProvider())
    assert api._key.encode() not in base64.b64decode(blob)  # the pickled provider carries no credentials
    urn = _urn("NetworkVolume", "model-cache")
    news = {"name": "grpc-models", "size_gb": 25, "data_center_id": dc, "__provider": blob}

    checked = engine.Check(provider_pb2.CheckRequest(urn=urn, olds=_struct({}), news=_struct(news)))
    assert list(checked.failures) == []
    created = engine.Create(provider_pb2.CreateRequest(urn=urn, properties=checked.inputs))
    outs = _dict(created.properties)
    assert outs["size_gb"] == 25 and api.get_volume(created.id).data_center_id == dc

    read = engine.Read(provider_pb2.ReadRequest(id=created.id, urn=urn, properties=created.properties))
    assert read.id == created.id

    bigger = {**news, "size_gb": 50}
    diff = engine.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties,
                                                news=_struct(bigger)))
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME and list(diff.replaces) == []
    updated = engine.Update(provider_pb2.UpdateRequest(id=created.id, urn=urn, olds=created.properties,
                                                       news=_struct(bigger)))
    assert _dict(updated.properties)["size_gb"] == 50 and api.get_volume(created.id).size_gb == 50

    shrink = engine.Check(provider_pb2.CheckRequest(urn=urn, olds=_struct(bigger), news=_struct(news)))
    assert [f.property for f in shrink.failures] == ["size_gb"]

    moved = engine.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=updated.properties,
                                                 news=_struct({**bigger, "data_center_id": other_dc})))
    assert moved.changes == provider_pb2.DiffResponse.DIFF_SOME and list(moved.replaces) == ["data_center_id"]

    api.delete_volume(created.id)  # drift
    gone = engine.Read(provider_pb2.ReadRequest(id=created.id, urn=urn, properties=updated.properties))
    assert gone.id == ""
    engine.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=updated.properties))


def test_pod_over_grpc(engine, api, where, public_key):
    dc, gpu, _ = where
    urn = _urn("Pod", "comfyui")
    news = {"name": "grpc-pod", "gpu_type_id": gpu, "image": IMAGE, "data_center_id": dc,
            "env": {"PUBLIC_KEY": public_key}, "__provider": serialize_provider(PodProvider(ready_timeout_s=60,
                                                                                           poll_s=0.2))}
    checked = engine.Check(provider_pb2.CheckRequest(urn=urn, olds=_struct({}), news=_struct(news)))
    assert list(checked.failures) == []
    created = engine.Create(provider_pb2.CreateRequest(urn=urn, properties=checked.inputs))
    outs = _dict(created.properties)
    assert outs["status"] == "RUNNING" and outs["ssh_port"] and api.get_pod(created.id) is not None

    diff = engine.Diff(provider_pb2.DiffRequest(id=created.id, urn=urn, olds=created.properties,
                                                news=_struct({**news, "gpu_type_id": "NVIDIA H200"})))
    assert list(diff.replaces) == ["gpu_type_id"] and diff.deleteBeforeReplace

    engine.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn, properties=created.properties))
    assert api.get_pod(created.id) is None


def test_provider_errors_reach_the_engine(engine):
    """A RunPod error inside a provider method comes back as a gRPC error with its message (the CLI shows it)."""
    urn = _urn("NetworkVolume", "bad")
    props = {"name": "x", "size_gb": 10, "data_center_id": "NO-SUCH-DC-1",
             "__provider": serialize_provider(NetworkVolumeProvider())}
    with pytest.raises(grpc.RpcError) as err:
        engine.Create(provider_pb2.CreateRequest(urn=urn, properties=_struct(props)))
    assert "NO-SUCH-DC-1" in err.value.details() or "data center" in err.value.details().lower()
