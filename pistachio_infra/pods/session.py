"""The teardown guarantee: a pod a command rents is terminated when the command ends — on success, on error, on
Ctrl-C (a second Ctrl-C included) and on SIGTERM — and every pod is in the state store before it exists.

    with pod_session(spec, policy=WatchdogPolicy(max_runtime_s=...)) as session:
        session.remote.start_detached("train", ...)

What the client cannot cover (SIGKILL, a closed laptop) the pod-side watchdog does (pods/watchdog.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from ..endpoints import Cloud, resolve_cloud
from ..errors import PistachioError
from ..paths import ssh_key_path
from ..runpod.port import Pod, RunPodApi
from ..signals import interruptible, shielded
from ..state import Store
from .bootstrap import DEFAULT_MODELS, BootstrapReport, bootstrap
from .lifecycle import PodLifecycle, PodSpec, PodTimings, ReadyPod
from .watchdog import Heartbeat, WatchdogPolicy, install

SSH_CONNECT_TIMEOUT_S = 120.0


class TerminateFailed(PistachioError):
    """Terminating the session's pod(s) kept failing: they may still bill. `pods`: (record name, pod id)."""

    def __init__(self, pods: list[tuple[str, str | None]], why: str, deadline_epoch: float | None) -> None:
        self.pods = pods
        self.why = why
        names = ", ".join(f"{name} ({pod_id})" if pod_id else name for name, pod_id in pods)
        by = f"; its watchdog ends it by {time.strftime('%H:%M', time.localtime(deadline_epoch))} at the latest" \
            if deadline_epoch else ""
        super().__init__(
            f"pod {names} could not be terminated and may still be billing ({why})",
            f"stop it with `pistachio-infra down {pods[0][0]}`{by}",
        )


@dataclass
class PodSession:
    name: str  # the pod's record name in the state store
    ready: ReadyPod
    remote: Any  # remote.Remote
    cloud: Cloud
    store: Store
    lifecycle: PodLifecycle
    deadline_epoch: float  # when the watchdog terminates the pod whatever happens
    bootstrap: BootstrapReport | None = None
    timings: dict[str, float] = field(default_factory=dict)  # provision_s, ssh_wait_s, watchdog_s, bootstrap_s
    heartbeat: Heartbeat | None = None  # touches the pod's heartbeat file while the client is attached
    detached: bool = False  # the pod's supervisor finishes the job and ends the pod: leave it running

    @property
    def pod(self) -> Pod:
        return self.ready.pod

    @property
    def cost_per_hr(self) -> float:
        return self.ready.pod.cost_per_hr or (self.ready.offer.price_per_hr if self.ready.offer else 0.0) or 0.0

    def connect(self, timeout: float = SSH_CONNECT_TIMEOUT_S) -> Any:
        """A new, separate SSH connection to this pod (same pinned host key)."""
        return connect_remote(self.store, self.ready, timeout=timeout)


def connect_remote(store: Store, ready: ReadyPod, *, timeout: float = SSH_CONNECT_TIMEOUT_S) -> Any:
    from ..remote import Remote

    return Remote.connect(
        pod_id=ready.pod.id, host=ready.host, port=ready.port, key_path=ssh_key_path(), store=store, timeout=timeout,
        user=ready.pod.ssh_user,
    )


def _connect_api(cloud: Cloud) -> RunPodApi:
    from ..runpod import connect

    return connect(cloud)


@contextmanager
def pod_session(
    spec: PodSpec,
    *,
    policy: WatchdogPolicy,
    models: Sequence[str] | None = DEFAULT_MODELS,
    keep: bool = False,
    reuse: bool = True,
    cloud: Cloud | None = None,
    api: RunPodApi | None = None,
    store: Store | None = None,
    timings: PodTimings | None = None,
    report: Callable[[str], None] | None = None,
    bootstrap_output: Callable[[str], None] | None = None,
) -> Iterator[PodSession]:
    """Rent (or, with `reuse`, re-attach to the job's live) pod, install the watchdog, keep a heartbeat, bootstrap
    (`models=None` skips it), yield; then terminate every pod this session created or took over, whatever ended
    the block. `keep=True` keeps the pod only when the block ends without an exception (`up`)."""
    cloud = cloud or resolve_cloud()
    own_api = api is None
    api = api or _connect_api(cloud)
    own_store = store is None
    store = store or Store()
    say = report or (lambda _msg: None)
    lifecycle = PodLifecycle(api, store, cloud, timings, say)
    remote: Any = None
    heartbeat: Heartbeat | None = None
    session: PodSession | None = None
    outcome = "error"
    with interruptible():
        try:
            t0 = time.monotonic()
            ready = lifecycle.acquire(_guarded(spec, policy, cloud), reuse=reuse)
            deadline = _settle_deadline(store, ready, policy)
            t1 = time.monotonic()
            remote = connect_remote(store, ready)
            install_watchdog(remote, policy, pod_id=ready.pod.id, rest_url=cloud.rest_url, deadline_epoch=deadline)
            heartbeat = Heartbeat(lambda: connect_remote(store, ready, timeout=30), policy.heartbeat_s).start()
            t2 = time.monotonic()
            say(f"{ready.name}: watchdog terminates it by {time.strftime('%H:%M:%S', time.localtime(deadline))}")
            boot = None
            if models is not None:
                say(f"{ready.name}: bootstrapping")
                boot = bootstrap(
                    remote, cloud, models=models, store=store, job_id=spec.job_id, pod_name=ready.name,
                    on_output=bootstrap_output,
                )
            t3 = time.monotonic()
            session = PodSession(
                name=ready.name,
                ready=ready,
                remote=remote,
                cloud=cloud,
                store=store,
                lifecycle=lifecycle,
                deadline_epoch=deadline,
                bootstrap=boot,
                timings={
                    "provision_s": ready.provision_s,
                    "ssh_wait_s": ready.ssh_wait_s,
                    "acquire_s": t1 - t0,
                    "watchdog_s": t2 - t1,
                    "bootstrap_s": t3 - t2,
                },
                heartbeat=heartbeat,
            )
            yield session
            outcome = "done"
        except BaseException as exc:
            outcome = _outcome(exc)
            raise
        finally:
            with shielded("terminating the pod"):
                if heartbeat is not None:
                    heartbeat.stop()
                if remote is not None:
                    _quietly(remote.close)
                failures = []
                if not (keep and outcome == "done") and not (session is not None and session.detached):
                    failures = teardown(lifecycle, reason=f"teardown: {outcome}", report=say)
                stuck = [(name, rec.pod_id if (rec := store.pod(name)) else None) for name, _ in failures]
                first = store.pod(stuck[0][0]) if stuck else None
                if own_api:
                    _quietly(api.close)
                if own_store:
                    _quietly(store.close)
                if failures and sys.exc_info()[1] is None:
                    raise TerminateFailed(stuck, "; ".join(why for _, why in failures),
                                          first.watchdog_deadline if first else None)


def install_watchdog(remote: Any, policy: WatchdogPolicy, *, pod_id: str, rest_url: str, deadline_epoch: float) -> None:
    """`watchdog.install`, reconnecting and retrying after an SSH drop: the install is idempotent (it replaces an older
    watchdog), and a drop in a pod's first seconds must not end a session that bootstrap would have survived."""
    remote.resumable(
        lambda: install(remote, policy, pod_id=pod_id, rest_url=rest_url, deadline_epoch=deadline_epoch)
    )


def _guarded(spec: PodSpec, policy: WatchdogPolicy, cloud: Cloud) -> PodSpec:
    """The spec with a guard from the pod's first second (pods/guard.py), unless it brings its own start command."""
    if spec.start_command is not None:
        return spec
    from dataclasses import replace

    from .guard import start_command

    return replace(spec, start_command=start_command(policy, rest_url=cloud.rest_url))


def _settle_deadline(store: Store, ready: ReadyPod, policy: WatchdogPolicy) -> float:
    """When the watchdog terminates the pod: a re-attached pod keeps its deadline, a new one gets max runtime."""
    record = store.pod(ready.name)
    assert record is not None
    deadline = record.watchdog_deadline if (ready.reused and record.watchdog_deadline) else None
    deadline = deadline or record.created_at + policy.max_runtime_s
    store.update_pod(ready.name, watchdog_deadline=deadline)
    return deadline


def _outcome(exc: BaseException) -> str:
    """How the session's block ended, as the teardown reason says it."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit):
        return f"stopped (exit {exc.code})"
    return f"failed ({type(exc).__name__})"


def teardown(lifecycle: PodLifecycle, *, reason: str, report: Callable[[str], None]) -> list[tuple[str, str]]:
    """Terminate every pod the lifecycle created or took over that is not gone yet; returns the failures.
    Each pod is tried even when an earlier one failed."""
    failures: list[tuple[str, str]] = []
    for name in dict.fromkeys(lifecycle.touched):
        record = lifecycle.store.pod(name)
        if record is None or record.status == "gone":
            continue
        try:
            seconds = lifecycle.terminate(name, reason)
            report(f"{name}: terminated ({seconds:.1f}s)")
        except Exception as exc:  # keep going: the other pods must be tried too
            failures.append((name, getattr(exc, "cause", None) or str(exc)))
            print(f"error: could not terminate {name}: {exc}", file=sys.stderr)
    return failures


def _quietly(fn: Callable[[], Any]) -> None:
    with suppress(Exception):
        fn()
