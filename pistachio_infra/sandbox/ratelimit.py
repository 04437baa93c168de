"""Per-key request quotas with the IETF RateLimit / RateLimit-Policy headers RunPod's REST v2 sends.

Three fixed windows (minute, hour, day) per key, each starting at the key's first request after the previous one
ran out; every authenticated request counts against its key, and a refused one does not.
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
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}  # (key, window) -> (start, used)

    def windows(self) -> list[tuple[str, int, int]]:
        return [
            ("minute", self.limits.per_minute, 60),
            ("hour", self.limits.per_hour, 3600),
            ("day", self.limits.per_day, 86400),
        ]

    def policy(self) -> str:
        return ", ".join(f'"{name}";q={quota};w={length}' for name, quota, length in self.windows())

    def hit(self, key: str, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        state = []
        exceeded: tuple[str, int] | None = None
        for name, quota, length in self.windows():
            start, used = self._windows.get((key, name), (now, 0))
            if now >= start + length:
                start, used = now, 0
            reset = max(1, math.ceil(start + length - now))
            if used >= quota and exceeded is None:
                exceeded = (name, reset)
            state.append((name, quota, start, used, reset))
        if exceeded is None:
            for name, _, start, used, _ in state:
                self._windows[(key, name)] = (start, used + 1)
        remaining = ", ".join(
            f'"{name}";r={max(0, quota - used - (exceeded is None))};t={reset}'
            for name, quota, _, used, reset in state
        )
        headers = {"RateLimit": remaining, "RateLimit-Policy": self.policy()}
        if exceeded:
            return Verdict(False, headers, retry_after=exceeded[1], window=exceeded[0])
        return Verdict(True, headers)
