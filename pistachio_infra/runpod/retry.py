"""One retry policy for both RunPod adapters (tenacity).

- 429 (`RateLimitedError`): wait what Retry-After says (capped), else back off.
- 5xx, timeouts, connection errors (`TransientError`): exponential backoff with jitter.
- Everything else (validation, no capacity, balance, auth, not found, conflict) is raised at once: the caller
  decides (fall back to another GPU class or data center, or tell the user).
- Every call is bounded in attempts and in total time, waits included.

Create is special: a create that failed on the way back may have created the pod. `create_idempotently` looks
the pod up by its unique name before any new create, polling briefly because listings lag.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from .port import RateLimitedError, TransientError

T = TypeVar("T")

RETRYABLE = (RateLimitedError, TransientError)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_total_s: float = 120.0  # one call, waits included; a wait that would pass it is not taken
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    jitter_s: float = 0.5
    max_retry_after_s: float = 60.0  # a longer Retry-After is capped to this (and then bounded by max_total_s)
    lookup_attempts: int = 6  # after a failed create: how often to look the pod up by name
    lookup_wait_s: float = 0.5  # between those lookups (listings lag a little behind creates)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)


DEFAULT_POLICY = RetryPolicy()


class wait_retry_after(wait_base):
    """Honour a 429's Retry-After; otherwise fall back to `fallback` (exponential with jitter)."""

    def __init__(self, fallback: wait_base, cap_s: float) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap_s)
        return self.fallback(retry_state)


def retrying(policy: RetryPolicy = DEFAULT_POLICY) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(RETRYABLE),
        wait=wait_retry_after(
            wait_exponential(multiplier=policy.backoff_initial_s, max=policy.backoff_max_s)
            + wait_random(0, policy.jitter_s),
            policy.max_retry_after_s,
        ),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_total_s),
        sleep=policy.sleep,
        reraise=True,
    )


def call(fn: Callable[[], T], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """Run `fn` under the policy: retry rate limits and transient failures, raise anything else at once."""
    return retrying(policy)(fn)


def create_idempotently(
    create: Callable[[], T],
    find_by_name: Callable[[str], T | None],
    name: str,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> T:
    """Create a resource (pod, volume, template) named `name` exactly once, even when RunPod errs after
    creating it. For pods the caller makes `name` unique per attempt.

    `create` must make one single request (no retries of its own); `find_by_name` may retry its reads.
    After a transient failure of `create` nothing is created again until a lookup by name came back empty
    `lookup_attempts` times in a row; a lookup that itself fails ends in a retry of the lookup, never a blind
    create.
    """
    maybe_created = False

    def attempt() -> T:
        nonlocal maybe_created
        if maybe_created:
            found = _lookup(find_by_name, name, policy)
            if found is not None:
                return found
        try:
            return create()
        except TransientError:
            maybe_created = True
            raise

    return retrying(policy)(attempt)


def _lookup(find_by_name: Callable[[str], T | None], name: str, policy: RetryPolicy) -> T | None:
    for i in range(policy.lookup_attempts):
        pod = find_by_name(name)
        if pod is not None:
            return pod
        if i + 1 < policy.lookup_attempts:
            policy.sleep(policy.lookup_wait_s)
    return None
