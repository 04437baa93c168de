"""Which cloud the tool talks to: RunPod itself, or the local sandbox.

This is the one place that knows about sandbox mode; everything else receives a `Cloud` and uses its URLs
and credentials, so the same code path runs against the sandbox and against RunPod.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .catalog import RepoPin, WheelPin
from .credentials import get_secret

RUNPOD_REST_URL = "https://api.runpod.io/v2"
RUNPOD_GRAPHQL_BASE = "https://api.runpod.io"
HF_ENDPOINT = "https://huggingface.co"
# where a pod's exposed `N/http` port answers: RunPod's HTTPS proxy (needs no public port)
RUNPOD_HTTP_URL = "https://{pod_id}-{private_port}.proxy.runpod.net"
SANDBOX_HTTP_URL = "http://127.0.0.1:{public_port}"


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
    # name -> where to download a pinned wheel from instead (the sandbox's package index serves stand-ins)
    wheel_overrides: dict[str, WheelPin] = field(default_factory=dict)
    # a pod's exposed http port as a URL; fields: pod_id, private_port, public_port
    http_url_template: str = RUNPOD_HTTP_URL

    def __repr__(self) -> str:  # never show the key
        return f"Cloud(rest_url={self.rest_url!r}, sandbox={self.sandbox})"

    def http_url(self, pod_id: str, private_port: int, http_ports: dict[int, int]) -> str | None:
        """The URL of a pod's exposed http port; None while the template needs a public port not assigned yet."""
        public = http_ports.get(private_port)
        if public is None and "{public_port}" in self.http_url_template:
            return None
        return self.http_url_template.format(pod_id=pod_id, private_port=private_port, public_port=public)


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
            wheel_overrides=dict(info.wheels),
            http_url_template=SANDBOX_HTTP_URL,
        )
    return Cloud(
        rest_url=os.environ.get("PISTACHIO_RUNPOD_REST_URL", RUNPOD_REST_URL),
        graphql_base=os.environ.get("RUNPOD_API_BASE_URL", RUNPOD_GRAPHQL_BASE),
        api_key=get_secret("RUNPOD_API_KEY", required=True) or "",
        hf_endpoint=os.environ.get("HF_ENDPOINT", HF_ENDPOINT),
        hf_token=get_secret("HF_TOKEN"),
        sandbox=False,
    )
