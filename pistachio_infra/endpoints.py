"""Which cloud the tool talks to: RunPod itself, or the local sandbox.

This is the one place that knows about sandbox mode; everything else receives a `Cloud` and uses its URLs
and credentials, so the same code path runs against the sandbox and against RunPod.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from .catalog import RepoPin, WheelPin
from .credentials import get_secret
from .settings import get_settings

RUNPOD_REST_URL = "https://api.runpod.io/v2"
RUNPOD_GRAPHQL_BASE = "https://api.runpod.io"
HF_ENDPOINT = "https://huggingface.co"
# where a pod's exposed `N/http` port answers: RunPod's HTTPS proxy (needs no public port)
RUNPOD_HTTP_URL = "https://{pod_id}-{private_port}.proxy.runpod.net"
PYPI_INDEX_URL = "https://pypi.org/simple/"  # where pods install Python packages from (a managed campaign's tool)
SANDBOX_HTTP_URL = "http://127.0.0.1:{public_port}"


# The cloud's name as recorded in state, ledgers, timings and locks.
CloudName = Literal["runpod", "sandbox"]
LABELS: dict[CloudName, str] = {"runpod": "RunPod", "sandbox": "sandbox"}


class _Named:
    """`name` and `label` of whatever knows whether it is the sandbox (a resolved `Cloud`, the CLI's `CloudChoice`)."""

    sandbox: bool

    @property
    def name(self) -> CloudName:
        """Which cloud this is, as recorded in state, ledgers, timings and locks."""
        return "sandbox" if self.sandbox else "runpod"

    @property
    def label(self) -> str:
        """The cloud's name as a person reads it ("RunPod", "sandbox")."""
        return LABELS[self.name]


@dataclass(frozen=True)
class Cloud(_Named):
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
    # the package index (PEP 503) pods install Python packages from: PyPI, or the sandbox's
    package_index: str = PYPI_INDEX_URL

    def __repr__(self) -> str:  # never show the key
        return f"Cloud(rest_url={self.rest_url!r}, sandbox={self.sandbox})"

    def http_url(self, pod_id: str, private_port: int, http_ports: dict[int, int]) -> str | None:
        """The URL of a pod's exposed http port; None while the template needs a public port not assigned yet."""
        public = http_ports.get(private_port)
        if public is None and "{public_port}" in self.http_url_template:
            return None
        return self.http_url_template.format(pod_id=pod_id, private_port=private_port, public_port=public)


class CloudChoice(_Named):
    """Which cloud a CLI invocation talks to: chosen once at the entry point (`--sandbox` or PISTACHIO_SANDBOX), kept
    as click's context object, and resolved into a `Cloud` (the sandbox started, the key read) once, on first use."""

    def __init__(self, sandbox: bool) -> None:
        self.sandbox = sandbox
        self._cloud: Cloud | None = None

    def hub(self) -> tuple[str, str | None]:
        """The Hugging Face hub (endpoint, token) of this cloud, without needing RunPod's key."""
        if self.sandbox:
            cloud = self.resolve()
            return cloud.hf_endpoint, cloud.hf_token
        return get_settings().hf_endpoint or HF_ENDPOINT, get_secret("HF_TOKEN")

    def use_sandbox(self) -> None:
        """Talk to the sandbox (`--sandbox` before or after a command name, `demo`, `lock --sandbox`)."""
        if self._cloud is not None and not self._cloud.sandbox:
            raise RuntimeError("the sandbox was chosen after RunPod was already resolved")
        self.sandbox = True
        # Written, not read: child processes (campaign jobs, the Pulumi provider, the sandbox's own helpers) inherit
        # the choice through their environment.
        os.environ["PISTACHIO_SANDBOX"] = "1"

    def resolve(self) -> Cloud:
        if self._cloud is None:
            self._cloud = _resolve(self.sandbox)
        return self._cloud


def cloud_choice() -> CloudChoice:
    """The invocation's choice (click's context object) when running under the CLI, else one from the settings."""
    import click

    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(CloudChoice) if ctx is not None else None
    return found if found is not None else CloudChoice(get_settings().sandbox)


def sandbox_enabled() -> bool:
    return cloud_choice().sandbox


def resolve_cloud() -> Cloud:
    """The cloud for this invocation: the sandbox when chosen (started if needed), else RunPod; resolved once per
    CLI invocation (outside the CLI, on every call)."""
    return cloud_choice().resolve()


def sandbox_cloud_description(cloud: Cloud) -> str:
    """What another machine needs to reach the same sandbox (PISTACHIO_SANDBOX_CLOUD), without the key: a managed
    campaign's controller pod gets this and RUNPOD_API_KEY through its environment."""
    import json

    return json.dumps({"rest_url": cloud.rest_url, "graphql_base": cloud.graphql_base,
                       "hf_endpoint": cloud.hf_endpoint, "package_index": cloud.package_index,
                       "repos": {k: vars(v) for k, v in cloud.repo_overrides.items()},
                       "wheels": {k: vars(v) for k, v in cloud.wheel_overrides.items()}})


def _described_sandbox(text: str) -> Cloud:
    import json

    data = json.loads(text)
    return Cloud(
        rest_url=data["rest_url"], graphql_base=data["graphql_base"],
        api_key=get_secret("RUNPOD_API_KEY", required=True) or "", hf_endpoint=data["hf_endpoint"], hf_token=None,
        sandbox=True, repo_overrides={k: RepoPin(**v) for k, v in data.get("repos", {}).items()},
        wheel_overrides={k: WheelPin(**v) for k, v in data.get("wheels", {}).items()},
        http_url_template=SANDBOX_HTTP_URL, package_index=data.get("package_index") or PYPI_INDEX_URL,
    )


def _resolve(sandbox: bool) -> Cloud:
    if sandbox and get_settings().sandbox_cloud:  # a sandbox that runs elsewhere (a managed campaign's controller)
        return _described_sandbox(get_settings().sandbox_cloud or "")
    if sandbox:
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
            package_index=info.index_url or PYPI_INDEX_URL,
        )
    knobs = get_settings()
    return Cloud(
        rest_url=knobs.runpod_rest_url or RUNPOD_REST_URL,
        graphql_base=knobs.runpod_graphql_base or RUNPOD_GRAPHQL_BASE,
        api_key=get_secret("RUNPOD_API_KEY", required=True) or "",
        hf_endpoint=knobs.hf_endpoint or HF_ENDPOINT,
        hf_token=get_secret("HF_TOKEN"),
        sandbox=False,
    )
