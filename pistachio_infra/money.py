"""How money is shown everywhere: cents from $1 up, four decimals below (sandbox runs cost fractions of a cent)."""

from __future__ import annotations


def usd(x: float, *, like: float | None = None) -> str:
    """`like`: pick the precision for that amount instead (a difference shown like the amounts it compares)."""
    return f"${x:.2f}" if abs(x if like is None else like) >= 1 else f"${x:.4f}"


def per_hour(x: float) -> str:
    """A GPU price: always cents ($0.49/h), the way RunPod lists it."""
    return f"${x:.2f}/h"


def signed_usd(x: float, *, like: float | None = None) -> str:
    return ("+" if x >= 0 else "−") + usd(abs(x), like=like)
