"""The RunPod port (`port.py`) and its adapters (`rest_v2.py`, `graphql.py`). Use `connect()` to get one.

Kept light: the adapters (httpx, the runpod SDK) are imported only when `connect()` is called.

May import: errors only (and endpoints for types). Knows nothing of pods' contents, the pipeline or the sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..endpoints import Cloud
    from .port import RunPodApi
    from .retry import RetryPolicy

ADAPTERS = ("rest", "graphql")


def connect(cloud: Cloud, adapter: str = "rest", *, policy: RetryPolicy | None = None) -> RunPodApi:
    """A RunPodApi for `cloud`: "rest" (REST v2, the default) or "graphql" (runpod SDK 1.12, retires early 2027)."""
    from .retry import DEFAULT_POLICY

    if adapter == "rest":
        from .rest_v2 import RestV2Api

        return RestV2Api(cloud.rest_url, cloud.api_key, policy=policy or DEFAULT_POLICY)
    if adapter == "graphql":
        from .graphql import GraphQLApi

        return GraphQLApi(cloud.graphql_base, cloud.api_key, policy=policy or DEFAULT_POLICY)
    from ..errors import ConfigError

    raise ConfigError(f"unknown RunPod adapter {adapter!r}", f"use one of: {', '.join(ADAPTERS)}")
