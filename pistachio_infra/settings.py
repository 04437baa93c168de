"""Every environment knob pistachio-infra reads, parsed in one place into one frozen, typed object.

`get_settings()` is the only way in: it reads the environment lazily (the first time a process needs a knob, not at
import), parses it once and hands back the same frozen `Settings` for as long as the environment it came from is
unchanged. Tests and the CLI entry point change the environment (monkeypatch, `--sandbox`, `demo`); a changed knob
gives a freshly parsed object, so nothing ever sees a stale value. `reset_settings()` drops the cache outright.

A knob that does not parse (`PISTACHIO_POD_POLL_S=soon`) is one `PistachioError` naming the variable and the fix.

Programs that run elsewhere read their own environment and are not covered here: the pod-side stand-ins
(`sandbox/standins/`), the ComfyUI agent (`comfy/agent.py`, standard library only) and the scripts rendered onto pods.

Knobs (default in brackets; "-" means the built-in value of the code that uses it):

    PISTACHIO_HOME                      state dir [the platform's user state dir]
    PISTACHIO_SANDBOX                   1/true/yes/on: talk to the local sandbox instead of RunPod [off]
    PISTACHIO_RUNPOD_REST_URL           RunPod REST v2 base [https://api.runpod.io/v2]
    RUNPOD_API_BASE_URL                 RunPod GraphQL base, the SDK's own name [https://api.runpod.io]
    HF_ENDPOINT                         Hugging Face hub, huggingface_hub's own name [https://huggingface.co]
    RUNPOD_API_KEY, HF_TOKEN, WANDB_API_KEY   secrets (else the 0600 credentials file; see credentials.py)
    PISTACHIO_WATCHDOG_{IDLE,GRACE,POLL,HEARTBEAT,RETRY}_S   pod watchdog timings [-] (tests use seconds)
    PISTACHIO_WATCHDOG_NOBODY_CAME_S    a pod's guard when no client ever comes [900]
    PISTACHIO_POD_{READY_TIMEOUT,POLL,TERMINATE_TIMEOUT,LOOKUP}_S, PISTACHIO_POD_{ATTEMPTS_PER_OFFER,MAX_ATTEMPTS}
                                        pod lifecycle timings and attempts [-] (see pods/lifecycle.PodTimings)
    PISTACHIO_TRAIN_POLL_S [1], PISTACHIO_TRAIN_SYNC_S [30], PISTACHIO_RECONNECT_S [300]   following a training run
    PISTACHIO_CAMPAIGN_POLL_S [2], PISTACHIO_CAMPAIGN_STOP_GRACE_S [120]                    the campaign executor
    PISTACHIO_DETACH_GRACE_S [3]        after a Ctrl-C of a supervised run: a second one within this stops it
    PISTACHIO_PAUSE_AT                  "point[:seconds]" or "point:@file": hold a run there (debugging, tests) [""]
    PISTACHIO_COMFY_DB_URL              the ComfyUI-Manager database [-]; PISTACHIO_COMFY_DB=offline: never download
    PISTACHIO_PULUMI_ROOT               the Pulumi CLI to use [on PATH, else the build cache]
    PISTACHIO_PULUMI_CACHE              where scripts/build_pulumi.sh builds it [$XDG_CACHE_HOME/pistachio-infra]
    PULUMI_CONFIG_PASSPHRASE(_FILE)     whether the caller gives the stack passphrase [generated, kept 0600]
    PISTACHIO_SANDBOX_IMAGE_CACHE       the sandbox's pod image and stand-in repos [the user cache dir]
    PISTACHIO_SANDBOX_LOG_REQUESTS      1: the sandbox server logs every API request [off]
    PISTACHIO_SANDBOX_CLOUD             a sandbox that runs elsewhere, as JSON URLs (a managed campaign's controller
                                        pod; endpoints.sandbox_cloud_description) [unset: the local sandbox]
    PISTACHIO_CONTROLLER_CPU_FLAVORS    CPU flavours a managed campaign's controller may rent, comma-separated
                                        [any: the cheapest that fits]
    PATH                                handed to the child processes we start (git, pulumi)
    NO_COLOR                            set (any value): no colour anywhere, errors included (no-color.org) [unset]
    NETRC                               the netrc file `wandb login` wrote [~/.netrc]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from .errors import PistachioError

SECRET_NAMES = ("RUNPOD_API_KEY", "HF_TOKEN", "WANDB_API_KEY")
WATCHDOG_KNOBS = ("IDLE", "GRACE", "POLL", "HEARTBEAT", "RETRY", "NOBODY_CAME")
POD_KNOBS = ("READY_TIMEOUT_S", "POLL_S", "TERMINATE_TIMEOUT_S", "LOOKUP_S", "ATTEMPTS_PER_OFFER", "MAX_ATTEMPTS")
_TRUE = {"1", "true", "yes", "on"}

# Every variable read, so the cache knows when the environment it was built from has changed.
NAMES: tuple[str, ...] = (
    "PISTACHIO_HOME", "PISTACHIO_SANDBOX", "PISTACHIO_RUNPOD_REST_URL", "RUNPOD_API_BASE_URL", "HF_ENDPOINT",
    *SECRET_NAMES,
    *(f"PISTACHIO_WATCHDOG_{k}_S" for k in WATCHDOG_KNOBS),
    *(f"PISTACHIO_POD_{k}" for k in POD_KNOBS),
    "PISTACHIO_TRAIN_POLL_S", "PISTACHIO_TRAIN_SYNC_S", "PISTACHIO_RECONNECT_S",
    "PISTACHIO_CAMPAIGN_POLL_S", "PISTACHIO_CAMPAIGN_STOP_GRACE_S", "PISTACHIO_DETACH_GRACE_S",
    "PISTACHIO_PAUSE_AT", "PISTACHIO_COMFY_DB_URL", "PISTACHIO_COMFY_DB",
    "PISTACHIO_PULUMI_ROOT", "PISTACHIO_PULUMI_CACHE", "XDG_CACHE_HOME",
    "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PISTACHIO_SANDBOX_IMAGE_CACHE", "PISTACHIO_SANDBOX_LOG_REQUESTS", "PISTACHIO_SANDBOX_CLOUD",
    "PISTACHIO_CONTROLLER_CPU_FLAVORS", "PATH", "NO_COLOR", "NETRC",
)


@dataclass(frozen=True)
class WatchdogKnobs:
    """Overrides of the pod watchdog's timings, in seconds; None keeps `WatchdogPolicy`'s own default."""

    idle_s: float | None = None
    grace_s: float | None = None
    poll_s: float | None = None
    heartbeat_s: float | None = None
    retry_s: float | None = None
    nobody_came_s: float = 900.0  # an image pull on RunPod takes minutes; a client that never comes costs this much


@dataclass(frozen=True)
class PodKnobs:
    """Overrides of `pods.lifecycle.PodTimings`; None keeps its default."""

    ready_timeout_s: float | None = None
    poll_s: float | None = None
    terminate_timeout_s: float | None = None
    lookup_s: float | None = None
    attempts_per_offer: int | None = None
    max_attempts: int | None = None


@dataclass(frozen=True)
class Settings:
    home: Path | None = None  # PISTACHIO_HOME
    sandbox: bool = False  # PISTACHIO_SANDBOX
    runpod_rest_url: str | None = None  # PISTACHIO_RUNPOD_REST_URL; None: RunPod's own
    runpod_graphql_base: str | None = None  # RUNPOD_API_BASE_URL; None: RunPod's own
    hf_endpoint: str | None = None  # HF_ENDPOINT; None: huggingface.co
    watchdog: WatchdogKnobs = field(default_factory=WatchdogKnobs)
    pod: PodKnobs = field(default_factory=PodKnobs)
    train_poll_s: float = 1.0
    train_sync_s: float = 30.0
    reconnect_s: float = 300.0
    campaign_poll_s: float = 2.0
    campaign_stop_grace_s: float = 120.0
    detach_grace_s: float = 3.0
    pause_at: str = ""
    comfy_db_url: str | None = None
    comfy_db_offline: bool = False
    pulumi_root: Path | None = None
    pulumi_cache: Path | None = None
    xdg_cache_home: Path | None = None
    pulumi_passphrase_given: bool = False
    sandbox_image_cache: Path | None = None
    sandbox_log_requests: bool = False
    sandbox_cloud: str | None = None  # PISTACHIO_SANDBOX_CLOUD
    controller_cpu_flavors: tuple[str, ...] = ()  # PISTACHIO_CONTROLLER_CPU_FLAVORS
    path: str = "/usr/bin:/bin"
    no_color: bool = False  # NO_COLOR
    netrc: Path | None = None  # NETRC
    # secret name -> value from the environment (the credentials file is read by credentials.py); never shown
    env_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    def secret(self, name: str) -> str | None:
        return self.env_secrets.get(name) or None


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        return self.env.get(name) or None

    def path(self, name: str) -> Path | None:
        raw = self.text(name)
        return Path(raw).expanduser() if raw else None

    def flag(self, name: str) -> bool:
        return self.env.get(name, "").strip().lower() in _TRUE

    def number(self, name: str, default: float | None = None) -> float | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            raise PistachioError(f"{name}={raw!r} is not a number", f"set {name} to seconds, e.g. 300") from None

    def seconds(self, name: str, default: float) -> float:
        value = self.number(name, default)
        assert value is not None
        return value

    def count(self, name: str) -> int | None:
        value = self.number(name)
        return None if value is None else int(value)


def _parse(env: Mapping[str, str]) -> Settings:
    r = _Reader(env)
    return Settings(
        home=r.path("PISTACHIO_HOME"),
        sandbox=r.flag("PISTACHIO_SANDBOX"),
        runpod_rest_url=r.text("PISTACHIO_RUNPOD_REST_URL"),
        runpod_graphql_base=r.text("RUNPOD_API_BASE_URL"),
        hf_endpoint=r.text("HF_ENDPOINT"),
        watchdog=WatchdogKnobs(
            idle_s=r.number("PISTACHIO_WATCHDOG_IDLE_S"),
            grace_s=r.number("PISTACHIO_WATCHDOG_GRACE_S"),
            poll_s=r.number("PISTACHIO_WATCHDOG_POLL_S"),
            heartbeat_s=r.number("PISTACHIO_WATCHDOG_HEARTBEAT_S"),
            retry_s=r.number("PISTACHIO_WATCHDOG_RETRY_S"),
            nobody_came_s=r.seconds("PISTACHIO_WATCHDOG_NOBODY_CAME_S", WatchdogKnobs.nobody_came_s),
        ),
        pod=PodKnobs(
            ready_timeout_s=r.number("PISTACHIO_POD_READY_TIMEOUT_S"),
            poll_s=r.number("PISTACHIO_POD_POLL_S"),
            terminate_timeout_s=r.number("PISTACHIO_POD_TERMINATE_TIMEOUT_S"),
            lookup_s=r.number("PISTACHIO_POD_LOOKUP_S"),
            attempts_per_offer=r.count("PISTACHIO_POD_ATTEMPTS_PER_OFFER"),
            max_attempts=r.count("PISTACHIO_POD_MAX_ATTEMPTS"),
        ),
        train_poll_s=r.seconds("PISTACHIO_TRAIN_POLL_S", Settings.train_poll_s),
        train_sync_s=r.seconds("PISTACHIO_TRAIN_SYNC_S", Settings.train_sync_s),
        reconnect_s=r.seconds("PISTACHIO_RECONNECT_S", Settings.reconnect_s),
        campaign_poll_s=r.seconds("PISTACHIO_CAMPAIGN_POLL_S", Settings.campaign_poll_s),
        campaign_stop_grace_s=r.seconds("PISTACHIO_CAMPAIGN_STOP_GRACE_S", Settings.campaign_stop_grace_s),
        detach_grace_s=r.seconds("PISTACHIO_DETACH_GRACE_S", Settings.detach_grace_s),
        pause_at=env.get("PISTACHIO_PAUSE_AT", ""),
        comfy_db_url=r.text("PISTACHIO_COMFY_DB_URL"),
        comfy_db_offline=env.get("PISTACHIO_COMFY_DB", "").lower() == "offline",
        pulumi_root=r.path("PISTACHIO_PULUMI_ROOT"),
        pulumi_cache=r.path("PISTACHIO_PULUMI_CACHE"),
        xdg_cache_home=r.path("XDG_CACHE_HOME"),
        pulumi_passphrase_given="PULUMI_CONFIG_PASSPHRASE" in env or "PULUMI_CONFIG_PASSPHRASE_FILE" in env,
        sandbox_image_cache=r.path("PISTACHIO_SANDBOX_IMAGE_CACHE"),
        sandbox_log_requests=r.flag("PISTACHIO_SANDBOX_LOG_REQUESTS"),
        sandbox_cloud=r.text("PISTACHIO_SANDBOX_CLOUD"),
        controller_cpu_flavors=tuple(f.strip() for f in env.get("PISTACHIO_CONTROLLER_CPU_FLAVORS", "").split(",")
                                     if f.strip()),
        path=env.get("PATH", Settings.path),
        no_color=bool(env.get("NO_COLOR")),
        netrc=r.path("NETRC"),
        env_secrets=MappingProxyType({n: env[n] for n in SECRET_NAMES if env.get(n)}),
    )


@lru_cache(maxsize=8)
def _cached(snapshot: tuple[tuple[str, str], ...]) -> Settings:
    return _parse(dict(snapshot))


def get_settings() -> Settings:
    """The settings of this process's current environment (parsed once per distinct environment)."""
    return _cached(tuple((n, os.environ[n]) for n in NAMES if n in os.environ))


def reset_settings() -> None:
    """Forget every parsed environment (tests that replace os.environ wholesale)."""
    _cached.cache_clear()
