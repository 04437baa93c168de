"""Injected faults: what the real cloud does to us, on demand (from the scenario file or Admin.inject at run time).

Each fault has a kind, a `count` (how many times it fires; None = until cleared) and kind-specific parameters:

rate_limit (count=1, retry_after=1, api="any", method, path, operation)
    429: REST problem+json with Retry-After; GraphQL a JSON body without `errors`, as RunPod's gateway sends.
server_error (count=1, status=500, api="any", method, path, operation)
    5xx: REST problem+json; GraphQL `errors` saying "Something went wrong...".
create_500_after_create (count=1, api="any", resource="pod")
    A create stores the resource (a pod, which also starts; or a template), then answers 500 (look it up by name).
no_capacity (count=None, gpu, data_center, visible=True)
    Creates for that GPU type / data center fail with RunPod's no-capacity error; `visible` also shows stock NONE
    in the catalog (False: the catalog still shows stock, as RunPod's sometimes does).
stuck_provisioning (count=1)
    The next pod never leaves PROVISIONING.
slow_provisioning (count=1, delay=5.0)
    The next pod stays PROVISIONING for `delay` seconds.
ssh_never_ready (count=1, mode="refused")
    The next pod's sshd never answers. "refused": RUNNING with its port published but nothing listening
    (connection refused). "starting": stuck in STARTING with runtime null.
ssh_drop (count=1, after=1.0)
    The next pod's SSH sessions are cut `after` seconds after it is RUNNING (detached jobs survive).
preempt (count=1, after=1.0)
    The next interruptible pod is preempted `after` seconds after RUNNING (-> EXITED, its processes killed).
resume_no_gpu (count=1)
    The next start/resume fails: "There are not enough free GPUs on the host machine to start this pod."
insufficient_balance (count=1)
    The next create answers 402.
forbidden (count=1)
    The next create answers 403 (no access to the GPU pool).

`api` is "rest", "graphql" or "any"; `method` / `path` (a prefix such as "/v2/pods") narrow REST matches and
`operation` (a GraphQL root field such as "podFindAndDeployOnDemand") narrows GraphQL matches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS: dict[str, dict[str, Any]] = {
    "rate_limit": {"count": 1, "retry_after": 1, "api": "any", "method": None, "path": None, "operation": None},
    "server_error": {"count": 1, "status": 500, "api": "any", "method": None, "path": None, "operation": None},
    "create_500_after_create": {"count": 1, "api": "any", "resource": "pod"},
    "no_capacity": {"count": None, "gpu": None, "data_center": None, "visible": True},
    "stuck_provisioning": {"count": 1},
    "slow_provisioning": {"count": 1, "delay": 5.0},
    "ssh_never_ready": {"count": 1, "mode": "refused"},
    "ssh_drop": {"count": 1, "after": 1.0},
    "preempt": {"count": 1, "after": 1.0},
    "resume_no_gpu": {"count": 1},
    "insufficient_balance": {"count": 1},
    "forbidden": {"count": 1},
}

_CHOICES = {
    "api": {"any", "rest", "graphql"},
    "mode": {"refused", "starting"},
}


class FaultError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> int | None:
        return self.params["count"]

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def matches_request(self, api: str, method: str = "", path: str = "", operation: str = "") -> bool:
        p = self.params
        if p.get("api", "any") not in ("any", api):
            return False
        if api == "rest":
            if p.get("method") and p["method"].upper() != method.upper():
                return False
            if p.get("path") and not path.startswith(p["path"]):
                return False
            if p.get("operation"):
                return False
        if api == "graphql":
            if p.get("operation") and p["operation"] != operation:
                return False
            if p.get("path") or p.get("method"):
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, **self.params}


def make_fault_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate `params` for `kind` and fill in defaults; raises FaultError with a one-line reason."""
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
    defaults = FAULT_KINDS[kind]
    unknown = set(params) - set(defaults)
    if unknown:
        raise FaultError(f"fault {kind!r} takes {', '.join(sorted(defaults))}; not {', '.join(sorted(unknown))}")
    merged = {**defaults, **params}
    count = merged["count"]
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultError(f"fault {kind!r}: count must be a positive integer or omitted, not {count!r}")
    for key, allowed in _CHOICES.items():
        if key in merged and merged[key] not in allowed:
            raise FaultError(f"fault {kind!r}: {key} must be one of {sorted(allowed)}, not {merged[key]!r}")
    for key in ("retry_after", "delay", "after"):
        if key in merged and (not isinstance(merged[key], int | float) or merged[key] < 0):
            raise FaultError(f"fault {kind!r}: {key} must be a number ≥ 0")
    if kind == "server_error" and merged["status"] not in (500, 502, 503, 504):
        raise FaultError("fault 'server_error': status must be 500, 502, 503 or 504")
    return merged


class FaultBook:
    """The armed faults, in the order they were added. Not persisted: a restarted server re-arms its scenario."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, kind: str, **params: Any) -> Fault:
        fault = Fault(next(self._ids), kind, make_fault_params(kind, params))
        self._faults.append(fault)
        return fault

    def clear(self, kind: str | None = None) -> None:
        self._faults = [f for f in self._faults if kind is not None and f.kind != kind]

    def active(self, kind: str) -> list[Fault]:
        return [f for f in self._faults if f.kind == kind]

    def take(self, kind: str, predicate=None) -> Fault | None:
        """The first armed fault of `kind` that matches, with one use consumed; None if none fires."""
        for fault in self._faults:
            if fault.kind == kind and (predicate is None or predicate(fault)):
                if fault.remaining is not None:
                    fault.params["count"] -= 1
                    if fault.params["count"] <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults]
