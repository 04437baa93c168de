"""Which cloud the tool talks to: RunPod itself, or the local sandbox.

This is the one place that knows about sandbox mode; everything else receives a `Cloud` and uses its URLs
and credentials, so the same code path runs against the sandbox and against RunPod.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .credentials import get_secret

RUNPOD_REST_URL = "https://api.runpod.io/v2"
RUNPOD_GRAPHQL_BASE = "https://api.runpod.io"
HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class RepoPin:
    url: str
    commit: str


@dataclass(frozen=True)
class Cloud:
    rest_url: str  # REST v2 base, e.g. https://api.runpod.io/v2
    graphql_base: str  # what the runpod SDK calls RUNPOD_API_BASE_URL (it appends /graphql)
    api_key: str
    hf_endpoint: str
    hf_token: str | None
    sandbox: bool
    # name -> where to clone it from instead of data/sources.toml (the sandbox serves stand-in repos)
    repo_overrides: dict[str, RepoPin] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the key
        return f"Cloud(rest_url={self.rest_url!r}, sandbox={self.sandbox})"


def sandbox_enabled() -> bool:
    return os.environ.get("PISTACHIO_SANDBOX", "").lower() in {"1", "true", "yes", "on"}


def resolve_cloud() -> Cloud:
    """The cloud for this process: the sandbox when PISTACHIO_SANDBOX=1 (started if needed), else RunPod."""
    if sandbox_enabled():
        from .sandbox.control import ensure_running

        info = ensure_running()
        return Cloud(
            rest_url=info.rest_url,
            graphql_base=info.graphql_base,
            api_key=info.api_key,
            hf_endpoint=info.hf_endpoint,
            hf_token=None,
            sandbox=True,
            repo_overrides=dict(info.repos),
        )
    return Cloud(
        rest_url=os.environ.get("PISTACHIO_RUNPOD_REST_URL", RUNPOD_REST_URL),
        graphql_base=os.environ.get("RUNPOD_API_BASE_URL", RUNPOD_GRAPHQL_BASE),
        api_key=get_secret("RUNPOD_API_KEY", required=True) or "",
        hf_endpoint=os.environ.get("HF_ENDPOINT", HF_ENDPOINT),
        hf_token=get_secret("HF_TOKEN"),
        sandbox=False,
    )
