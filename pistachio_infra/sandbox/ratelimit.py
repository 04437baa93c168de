"""Per-key request quotas with the IETF RateLimit / RateLimit-Policy headers RunPod's REST v2 sends.

Fixed windows (minute, hour, day) aligned to the epoch; every authenticated request counts against its key.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .scenario import RateLimits


@dataclass
class Verdict:
    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0
    window: str = ""


class RateLimiter:
    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._counts: dict[tuple[str, str, int], int] = {}

    def windows(self) -> list[tuple[str, int, int]]:
        return [
            ("minute", self.limits.per_minute, 60),
            ("hour", self.limits.per_hour, 3600),
            ("day", self.limits.per_day, 86400),
        ]

    def policy(self) -> str:
        return ", ".join(f'"{name}";q={quota};w={length}' for name, quota, length in self.windows())

    def hit(self, key: str, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        state = []
        exceeded: tuple[str, int] | None = None
        for name, quota, length in self.windows():
            slot = int(now // length)
            used = self._counts.get((key, name, slot), 0)
            reset = max(1, math.ceil((slot + 1) * length - now))
            if used >= quota and exceeded is None:
                exceeded = (name, reset)
            state.append((name, quota, length, slot, used, reset))
        if exceeded is None:
            for name, _, _, slot, used, _ in state:
                self._counts[(key, name, slot)] = used + 1
            self._forget(now)
        remaining = ", ".join(
            f'"{name}";r={max(0, quota - used - (exceeded is None))};t={reset}'
            for name, quota, _, _, used, reset in state
        )
        headers = {"RateLimit": remaining, "RateLimit-Policy": self.policy()}
        if exceeded:
            return Verdict(False, headers, retry_after=exceeded[1], window=exceeded[0])
        return Verdict(True, headers)

    def _forget(self, now: float) -> None:
        if len(self._counts) < 4096:
            return
        self._counts = {
            k: v for k, v in self._counts.items() if k[2] >= int(now // dict(minute=60, hour=3600, day=86400)[k[1]])
        }
