"""Pod lifecycle: create (one attempt = one unique name, recorded before the call), wait until SSH answers,
replace pods stuck before that, terminate and wait until gone.

Exactly one billing pod per job at a time: a stuck or dead attempt is terminated (and seen gone) before the next
one is created, and live pods left over from an earlier run of the same job are reused or terminated first.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..catalog import sources
from ..endpoints import Cloud
from ..errors import PistachioError
from ..runpod.port import (
    AuthError,
    InsufficientBalanceError,
    NoCapacityError,
    NotFoundError,
    Pod,
    PodRequest,
    PodStatus,
    RunPodApi,
    RunPodApiError,
    ValidationError,
)
from ..settings import get_settings
from ..state import PodRecord, Store
from .offers import Offer, candidate_offers

NAME_PREFIX = "pistachio-"
DEAD = {PodStatus.EXITED, PodStatus.ERROR, PodStatus.TERMINATED}

Report = Callable[[str], None]


@dataclass(frozen=True)
class PodTimings:
    """How long to wait for what. RunPod needs minutes to pull an image; the sandbox needs seconds."""

    ready_timeout_s: float = 480.0  # create → SSH banner; a pod still not answering is stuck: replaced
    poll_s: float = 3.0
    terminate_timeout_s: float = 120.0  # terminate → the API no longer lists the pod
    lookup_s: float = 10.0  # how long to look for a pod whose create never answered
    attempts_per_offer: int = 2  # stuck/died attempts on one offer before moving to the next
    max_attempts: int = 6

    @classmethod
    def from_env(cls) -> PodTimings:
        """Defaults, with PISTACHIO_POD_* overriding (see settings.py)."""
        knobs, d = get_settings().pod, cls()

        def pick(value: float | None, default: float) -> float:
            return default if value is None else value

        return cls(
            ready_timeout_s=pick(knobs.ready_timeout_s, d.ready_timeout_s),
            poll_s=pick(knobs.poll_s, d.poll_s),
            terminate_timeout_s=pick(knobs.terminate_timeout_s, d.terminate_timeout_s),
            lookup_s=pick(knobs.lookup_s, d.lookup_s),
            attempts_per_offer=int(pick(knobs.attempts_per_offer, d.attempts_per_offer)),
            max_attempts=int(pick(knobs.max_attempts, d.max_attempts)),
        )


@dataclass(frozen=True)
class PodSpec:
    """What to rent. `gpu_classes` is the user's order: the first choice, then the fallbacks."""

    purpose: str  # job | up | comfyui | rebuild — part of the pod name
    label: str  # the job's name — part of the pod name
    gpu_classes: tuple[str, ...]
    public_key: str  # our pod key (sshkeys.public_key()); the image starts sshd from PUBLIC_KEY
    job_id: int | None = None
    data_centers: tuple[str, ...] = ()  # preferred data centers in order; empty: any
    network_volume_id: str | None = None
    network_volume_dc: str | None = None
    image: str | None = None  # default: data/sources.toml [image]
    container_disk_gb: int = 50
    volume_gb: int = 150  # the pod's own volume at /workspace when there is no network volume
    env: dict[str, str] = field(default_factory=dict)
    http_ports: tuple[int, ...] = ()  # exposed as `N/http` (RunPod proxies them; Cloud.http_url gives the URL)
    cloud_type: str = "SECURE"
    interruptible: bool = False  # spot: cheaper, may be preempted (the GraphQL adapter rents these)
    start_command: str | None = None  # the container's start command (pods/guard.py); None: the image's own


@dataclass
class Attempt:
    name: str
    offer: Offer
    outcome: str = "pending"  # ready | no capacity | stuck | died | error
    pod_id: str | None = None
    seconds: float = 0.0


@dataclass
class ReadyPod:
    name: str  # our record's name
    pod: Pod
    offer: Offer | None  # None when an existing pod was reused
    attempts: list[Attempt]
    provision_s: float  # create call → pod listed with an SSH endpoint
    ssh_wait_s: float  # endpoint listed → sshd answers
    reused: bool = False

    @property
    def host(self) -> str:
        assert self.pod.ssh_host
        return self.pod.ssh_host

    @property
    def port(self) -> int:
        assert self.pod.ssh_port
        return self.pod.ssh_port


def pod_name(purpose: str, label: str) -> str:
    """`pistachio-{purpose}-{job}-{random}`: unique per attempt, so a create can be looked up by name."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:32] or "pod"
    return f"{NAME_PREFIX}{purpose}-{slug}-{secrets.token_hex(3)}"


def ssh_banner(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when something at host:port speaks SSH (sends an `SSH-` banner): sshd is really up."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class PodLifecycle:
    """Creates, waits for, replaces and terminates pods, recording each step in the state store."""

    def __init__(
        self,
        api: RunPodApi,
        store: Store,
        cloud: Cloud,
        timings: PodTimings | None = None,
        report: Report | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.cloud_name = cloud.name
        self.timings = timings or PodTimings.from_env()
        self.report = report or (lambda _msg: None)
        self.touched: list[str] = []  # record names this lifecycle created or took over (teardown's list)

    # --- choosing -------------------------------------------------------------------------------------

    def offers(self, spec: PodSpec) -> list[Offer]:
        return candidate_offers(
            self.api.list_gpu_types(),
            spec.gpu_classes,
            data_centers=spec.data_centers,
            volume_dc=spec.network_volume_dc if spec.network_volume_id else None,
            cloud_type=spec.cloud_type,
        )

    def request(self, spec: PodSpec, offer: Offer, name: str) -> PodRequest:
        return PodRequest(
            name=name,
            image=spec.image or sources().image.name,
            gpu_type_id=offer.gpu_type_id,
            cloud=spec.cloud_type,
            data_center_ids=[offer.data_center_id] if offer.data_center_id else [],
            network_volume_id=spec.network_volume_id,
            volume_gb=None if spec.network_volume_id else spec.volume_gb,
            container_disk_gb=spec.container_disk_gb,
            ports=["22/tcp", *(f"{port}/http" for port in spec.http_ports)],
            env={**spec.env, "PUBLIC_KEY": spec.public_key},
            min_memory_gb=offer.min_memory_gb,
            interruptible=spec.interruptible,
            args=spec.start_command,
        )

    # --- acquiring ------------------------------------------------------------------------------------

    def acquire(self, spec: PodSpec, *, reuse: bool = True) -> ReadyPod:
        """A pod answering SSH for `spec`: an existing live one of the same job (when `reuse`), else a new one,
        falling back through the offers and replacing pods stuck before SSH is ready."""
        if spec.job_id is not None:
            existing = self._settle_existing(spec.job_id, reuse=reuse)
            if existing is not None:
                return existing
        offers = self.offers(spec)
        attempts: list[Attempt] = []
        for offer in offers:
            for _ in range(self.timings.attempts_per_offer):
                if len(attempts) >= self.timings.max_attempts:
                    break
                attempt = Attempt(name=pod_name(spec.purpose, spec.label), offer=offer)
                attempts.append(attempt)
                ready = self._try(spec, attempt)
                if ready is not None:
                    ready.attempts = attempts
                    return ready
                if attempt.outcome == "no capacity":
                    break  # next offer
        summary = "; ".join(f"{a.offer.where}: {a.outcome}" for a in attempts) or "no attempt"
        if attempts and all(a.outcome == "no capacity" for a in attempts):
            raise NoCapacityError(
                f"no capacity for {', '.join(spec.gpu_classes)} ({summary})",
                "add fallback classes (`train --gpu a6000,auto`, "
                "`up --gpu-fallback CLASS`, or gpu = [...] in the job), "
                "allow other data centers, or retry later",
            )
        raise PistachioError(
            f"no pod became ready after {len(attempts)} attempt(s) ({summary})",
            "retry later or with other GPU classes; every attempt was terminated",
        )

    def _try(self, spec: PodSpec, attempt: Attempt) -> ReadyPod | None:
        offer = attempt.offer
        name = attempt.name
        t0 = time.monotonic()
        self.store.record_pod_intent(
            name,
            cloud=self.cloud_name,
            purpose=spec.purpose,
            job_id=spec.job_id,
            gpu_class=offer.gpu_class,
            gpu_type_id=offer.gpu_type_id,
            data_center_id=offer.data_center_id,
        )
        self.touched.append(name)
        price = f"${offer.price_per_hr:.2f}/h" if offer.price_per_hr is not None else "price unknown"
        self.report(f"creating {name} ({offer.where}, {price})")
        try:
            pod = self.api.create_pod(self.request(spec, offer, name))
        except NoCapacityError as exc:
            attempt.outcome = "no capacity"
            self.store.mark_pod_gone(name, f"not created: {exc.cause}")
            self.report(f"no capacity: {offer.where}")
            return None
        except (AuthError, InsufficientBalanceError, ValidationError) as exc:
            attempt.outcome = "error"
            self.store.mark_pod_gone(name, f"not created: {exc.cause}")
            raise
        except RunPodApiError:
            # retries are exhausted; the pod may exist all the same: look it up before giving up on it
            found = self._find(name)
            if found is None:
                attempt.outcome = "error"
                self.store.mark_pod_gone(name, "not created: create failed and no pod has this name")
                raise
            pod = found
        attempt.pod_id = pod.id
        self.store.update_pod(
            name,
            pod_id=pod.id,
            status="created",
            cost_per_hr=pod.cost_per_hr or offer.price_per_hr,
            data_center_id=pod.data_center_id or offer.data_center_id,
            gpu_type_id=pod.gpu_type_id or offer.gpu_type_id,
        )
        outcome, pod, provision_s, ssh_wait_s = self._wait_ready(pod, t0)
        attempt.seconds = time.monotonic() - t0
        attempt.outcome = outcome
        if outcome == "ready":
            self.store.update_pod(
                name,
                status="ready",
                ready_at=time.time(),
                ssh_host=pod.ssh_host,
                ssh_port=pod.ssh_port,
                cost_per_hr=pod.cost_per_hr or offer.price_per_hr,
                data_center_id=pod.data_center_id or offer.data_center_id,
            )
            return ReadyPod(name, pod, offer, [], provision_s, ssh_wait_s)
        reason = (
            f"stuck {pod.status.value} without SSH for {self.timings.ready_timeout_s:.0f}s: replaced"
            if outcome == "stuck"
            else f"{pod.status.value} before SSH was ready: replaced"
        )
        self.report(f"{name}: {reason}")
        self.terminate(name, reason)
        return None

    def _wait_ready(self, pod: Pod, t0: float) -> tuple[str, Pod, float, float]:
        """Poll until SSH answers ('ready'), the pod dies ('died') or the timeout passes ('stuck')."""
        deadline = t0 + self.timings.ready_timeout_s
        listed_at: float | None = None
        last = pod
        while True:
            if last.ssh_ready:
                listed_at = listed_at or time.monotonic()
                if ssh_banner(last.ssh_host or "", last.ssh_port or 0):
                    now = time.monotonic()
                    return "ready", last, listed_at - t0, now - listed_at
            if time.monotonic() >= deadline:
                return "stuck", last, 0.0, 0.0
            time.sleep(self.timings.poll_s)
            try:
                current = self.api.get_pod(pod.id)
            except RunPodApiError:
                continue  # the adapter already retried; keep polling until the deadline
            if current is None:
                return "died", last.model_copy(update={"status": PodStatus.TERMINATED}), 0.0, 0.0
            if current.status in DEAD:
                return "died", current, 0.0, 0.0
            last = current

    def reusable(self, job_id: int) -> str | None:
        """The record name of the job's live pod that `acquire` would reuse, changing nothing (a resumed `train`
        does not ask to rent what it already rents)."""
        for rec in self.store.pods(live_only=True, job_id=job_id):
            if rec.cloud == self.cloud_name and _answers(self._api_pod(rec)):
                return rec.name
        return None

    def _settle_existing(self, job_id: int, *, reuse: bool) -> ReadyPod | None:
        """Reuse the job's live pod if it still answers SSH; terminate every other one (one billing pod)."""
        chosen: ReadyPod | None = None
        for rec in self.store.pods(live_only=True, job_id=job_id):
            if rec.cloud != self.cloud_name:
                continue
            pod = self._api_pod(rec)
            if reuse and chosen is None and pod is not None and _answers(pod):
                self.touched.append(rec.name)
                self.store.update_pod(rec.name, status="ready", ssh_host=pod.ssh_host, ssh_port=pod.ssh_port)
                self.report(f"reusing {rec.name} ({pod.id})")
                chosen = ReadyPod(rec.name, pod, None, [], 0.0, 0.0, reused=True)
            else:
                self.terminate(rec.name, "left over from an earlier run of this job")
        return chosen

    # --- terminating ----------------------------------------------------------------------------------

    def terminate(self, name_or_id: str, reason: str, *, wait: bool = True) -> float:
        """Terminate a pod (ours by record name or pod id, or any pod id) and, with `wait`, until RunPod no longer
        lists it; then mark the record gone. Idempotent. Returns the seconds it took."""
        t0 = time.monotonic()
        rec = self.store.pod(name_or_id)
        pod_id = rec.pod_id if rec else name_or_id
        if rec is not None and rec.status == "gone" and rec.pod_id is None:
            return 0.0
        if rec is not None and pod_id is None:
            found = self._find(rec.name, patience=self.timings.lookup_s)
            if found is None:
                self.store.mark_pod_gone(rec.name, f"{reason} (never created)")
                return time.monotonic() - t0
            pod_id = found.id
            self.store.update_pod(rec.name, pod_id=pod_id, status="created")
        assert pod_id is not None
        with contextlib.suppress(NotFoundError):
            self.api.terminate_pod(pod_id)
        if wait:
            self._wait_gone(pod_id)
        if rec is not None:
            self.store.mark_pod_gone(rec.name, reason)
        return time.monotonic() - t0

    def _wait_gone(self, pod_id: str) -> None:
        deadline = time.monotonic() + self.timings.terminate_timeout_s
        while time.monotonic() < deadline:
            try:
                pod = self.api.get_pod(pod_id)
            except RunPodApiError:
                pod = Pod(id=pod_id, name="", status=PodStatus.RUNNING)  # unknown: keep waiting
            if pod is None or pod.status == PodStatus.TERMINATED:
                return
            time.sleep(min(self.timings.poll_s, 1.0))
        raise PistachioError(
            f"pod {pod_id} was asked to terminate but is still listed after {self.timings.terminate_timeout_s:.0f}s",
            f"check `pistachio-infra status`; run `pistachio-infra down {pod_id}` again",
        )

    # --- lookups ----------------------------------------------------------------------------------------

    def _api_pod(self, rec: PodRecord) -> Pod | None:
        if rec.pod_id:
            return self.api.get_pod(rec.pod_id)
        return self._find(rec.name)

    def _find(self, name: str, patience: float = 0.0) -> Pod | None:
        """Look a pod up by name; listings lag behind creates, so retry for `patience` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                pod = self.api.find_pod_by_name(name)
            except RunPodApiError:
                pod = None
            if pod is not None or time.monotonic() >= deadline:
                return pod
            time.sleep(min(self.timings.poll_s, 1.0))


def _answers(pod: Pod | None) -> bool:
    """RunPod lists the pod with an SSH endpoint, and its sshd sends a banner."""
    return pod is not None and pod.ssh_ready and bool(ssh_banner(pod.ssh_host or "", pod.ssh_port or 0))
