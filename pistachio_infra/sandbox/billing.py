"""What the sandbox charges, and the /v2/billing/pods report.

The rule: a pod accrues cost per second at its `cost_per_hr` (the GPU type's seed price for the pod's cloud times
the GPU count; for an interruptible pod, its bid times the GPU count) from the moment it is created until it is
stopped, preempted or terminated. Starting it again opens a new interval at the same rate. Terminate ends billing
for good. Disks and network volumes are free in the sandbox (diskAmount is 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

Interval = tuple[str, float, float | None, float]  # pod_id, start, end (None = still open), USD per hour

BUCKETS = ("hour", "day", "week", "month", "year")


def amount(start: float, end: float, rate: float) -> float:
    return max(0.0, end - start) * rate / 3600.0


def billed_by_pod(intervals: Iterable[Interval], now: float) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for pod_id, start, end, rate in intervals:
        totals[pod_id] += amount(start, now if end is None else end, rate)
    return dict(totals)


def floor_bucket(t: datetime, bucket: str) -> datetime:
    t = t.astimezone(UTC)
    if bucket == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def next_bucket(t: datetime, bucket: str) -> datetime:
    if bucket == "hour":
        return t + timedelta(hours=1)
    if bucket == "day":
        return t + timedelta(days=1)
    if bucket == "week":
        return t + timedelta(weeks=1)
    if bucket == "month":
        return t.replace(year=t.year + 1, month=1) if t.month == 12 else t.replace(month=t.month + 1)
    return t.replace(year=t.year + 1)


def ceil_bucket(t: datetime, bucket: str) -> datetime:
    floor = floor_bucket(t, bucket)
    return floor if floor == t else next_bucket(floor, bucket)


def iso(t: datetime) -> str:
    """RFC 3339 (`%Y` is not zero-padded below year 1000 on every platform, so the year is formatted here)."""
    t = t.astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


class WindowError(ValueError):
    """A billing window outside the dates this report can express (a 400)."""


def buckets_back(t: datetime, bucket: str, n: int) -> datetime:
    """The start of the bucket `n` buckets before the one starting at `t`, computed (never stepped)."""
    try:
        if bucket in ("hour", "day", "week"):
            return t - timedelta(**{f"{bucket}s": n})
        if bucket == "month":
            years, month0 = divmod(t.year * 12 + t.month - 1 - n, 12)
            return t.replace(year=years, month=month0 + 1)
        return t.replace(year=t.year - n)
    except (OverflowError, ValueError):
        raise WindowError(f"lastN={n + 1} {bucket}s reaches before year 1") from None


def resolve_window(
    now: float, bucket: str, start: datetime | None, end: datetime | None, last_n: int | None
) -> tuple[datetime, datetime]:
    now_dt = datetime.fromtimestamp(now, UTC)
    if last_n is not None:
        current = floor_bucket(now_dt, bucket)
        return buckets_back(current, bucket, last_n - 1), next_bucket(current, bucket)
    if start is not None and end is not None and end.astimezone(UTC) <= start.astimezone(UTC):
        raise WindowError("endTime must be after startTime")
    try:
        start_dt = floor_bucket(start or now_dt - timedelta(days=30), bucket)
        end_dt = ceil_bucket(end or now_dt, bucket)
    except (OverflowError, ValueError):
        raise WindowError("startTime/endTime too close to year 1 or 9999 for this bucketSize") from None
    if end_dt <= start_dt:
        raise WindowError("endTime must be after startTime")
    return start_dt, end_dt


def pod_billing_report(
    intervals: Iterable[Interval],
    now: float,
    *,
    bucket: str = "day",
    start: datetime | None = None,
    end: datetime | None = None,
    last_n: int | None = None,
    pod_id: str | None = None,
    cpu_pods: frozenset[str] = frozenset(),
) -> dict:
    """A ListPodBillingResponse: one record per pod per bucket it was billed in; the compute of the pods in
    `cpu_pods` counts as cpuAmount, every other pod's as gpuAmount."""
    window_start, window_end = resolve_window(now, bucket, start, end, last_n)
    per: dict[tuple[datetime, str], float] = defaultdict(float)
    for pid, s, e, rate in intervals:
        if pod_id is not None and pid != pod_id:
            continue
        s_dt = max(datetime.fromtimestamp(s, UTC), window_start)
        e_dt = min(datetime.fromtimestamp(now if e is None else e, UTC), window_end)
        b = floor_bucket(s_dt, bucket)
        while b < e_dt:
            b_end = next_bucket(b, bucket)
            lo, hi = max(b, s_dt), min(b_end, e_dt)
            if hi > lo:
                per[(b, pid)] += amount(lo.timestamp(), hi.timestamp(), rate)
            b = b_end
    records = []
    for (b, pid), usd in sorted(per.items()):
        records.append(
            {
                "startTime": iso(b),
                "endTime": iso(next_bucket(b, bucket)),
                "podId": pid,
                "totalAmount": usd,
                "gpuAmount": 0.0 if pid in cpu_pods else usd,
                "cpuAmount": usd if pid in cpu_pods else 0.0,
                "diskAmount": 0.0,
            }
        )
    total = sum(r["totalAmount"] for r in records)
    return {
        "records": records,
        "metadata": {
            "query": {"startTime": iso(window_start), "endTime": iso(window_end), "bucketSize": bucket,
                      "podId": pod_id},
            "recordCount": len(records),
            "uniquePodCount": len({r["podId"] for r in records}),
            "totals": {"totalAmount": total, "gpuAmount": sum(r["gpuAmount"] for r in records),
                       "cpuAmount": sum(r["cpuAmount"] for r in records), "diskAmount": 0.0},
        },
    }
