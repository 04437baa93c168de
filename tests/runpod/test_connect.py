"""connect(): picks the adapter, stays light to import, refuses unknown adapters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pistachio_infra.endpoints import Cloud
from pistachio_infra.errors import ConfigError
from pistachio_infra.runpod import Adapter, connect
from pistachio_infra.runpod.graphql import GraphQLApi
from pistachio_infra.runpod.port import RunPodApi
from pistachio_infra.runpod.rest_v2 import RestV2Api

CLOUD = Cloud(
    rest_url="http://127.0.0.1:9/v2",
    graphql_base="http://127.0.0.1:9",
    api_key="rpa_TESTKEY_123456",
    hf_endpoint="http://127.0.0.1:9",
    hf_token=None,
    sandbox=True,
)


def test_connect_gives_each_adapter():
    rest, gql = connect(CLOUD), connect(CLOUD, "graphql")
    assert isinstance(rest, RestV2Api) and isinstance(gql, GraphQLApi)
    assert isinstance(rest, RunPodApi) and isinstance(gql, RunPodApi)
    assert CLOUD.api_key not in repr(rest) + repr(gql)


def test_the_adapter_for_a_pod_follows_interruptible_and_closes_through_the_port():
    spot, on_demand = connect(CLOUD, Adapter.for_pod(True)), connect(CLOUD, Adapter.for_pod(False))
    assert isinstance(spot, GraphQLApi) and isinstance(on_demand, RestV2Api)
    for api in (spot, on_demand):
        api.close()  # part of RunPodApi: callers never probe for it


def test_unknown_adapter_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        connect(CLOUD, "soap")
    assert "rest" in str(info.value) and "graphql" in str(info.value)


def test_importing_the_port_loads_neither_httpx_nor_the_sdk():
    code = (
        "import sys, pistachio_infra.runpod, pistachio_infra.runpod.port; "
        "print(sorted(m for m in ('httpx', 'runpod', 'tenacity', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
