"""The RunPod port (`port.py`) and its adapters (`rest_v2.py`, `graphql.py`). Use `connect()` to get one.

Kept light: the adapters (httpx, the runpod SDK) are imported only when `connect()` is called.

May import: errors only (and endpoints for types). Knows nothing of pods' contents, the pipeline or the sandbox."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..endpoints import Cloud
    from .port import RunPodApi
    from .retry import RetryPolicy

class Adapter(StrEnum):
    REST = "rest"  # REST v2, the default
    GRAPHQL = "graphql"  # the runpod SDK 1.12's GraphQL API, retires early 2027

    @classmethod
    def for_pod(cls, interruptible: bool) -> Adapter:
        """REST v2 cannot rent interruptible (spot) pods; GraphQL's podRentInterruptable can."""
        return cls.GRAPHQL if interruptible else cls.REST


ADAPTERS = tuple(a.value for a in Adapter)


def connect(cloud: Cloud, adapter: Adapter | str = Adapter.REST, *, policy: RetryPolicy | None = None) -> RunPodApi:
    """A RunPodApi for `cloud` through `adapter` (a plain "rest"/"graphql" is accepted too). Close it when done."""
    from .retry import DEFAULT_POLICY

    try:
        adapter = Adapter(adapter)
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"unknown RunPod adapter {adapter!r}", f"use one of: {', '.join(ADAPTERS)}") from None
    if adapter is Adapter.REST:
        from .rest_v2 import RestV2Api

        return RestV2Api(cloud.rest_url, cloud.api_key, policy=policy or DEFAULT_POLICY)
    from .graphql import GraphQLApi

    return GraphQLApi(cloud.graphql_base, cloud.api_key, policy=policy or DEFAULT_POLICY)
