"""The deterministic train/eval split. Standard library only: the client's split and the pod's supervisor
(pods/supervisor.py) split the same way."""

from __future__ import annotations

import hashlib


def split_names(names: list[str], seed: int, eval_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/eval split: every name lands on exactly one side, the same for the same seed whatever
    the input order (names are ranked by sha256(seed, name); the lowest-ranked round(n × eval_fraction), at least
    1 and at most n - 1, are held out). Both lists are sorted."""
    unique = sorted(set(names))
    if len(unique) < 2:
        raise ValueError(f"need at least 2 images to split, got {len(unique)}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1, got {eval_fraction}")
    n_eval = min(len(unique) - 1, max(1, round(len(unique) * eval_fraction)))
    ranked = sorted(unique, key=lambda n: hashlib.sha256(f"{seed}\0{n}".encode()).hexdigest())
    held_out = set(ranked[:n_eval])
    return [n for n in unique if n not in held_out], [n for n in unique if n in held_out]
