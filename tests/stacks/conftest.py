"""Helpers shared by the stack tests (the `sandbox` fixture itself comes from tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture
def api(sandbox):
    """A client of the sandbox made exactly as the providers make theirs (env → resolve_cloud → connect)."""
    from pistachio_infra.stacks.providers import runpod_api

    with runpod_api() as client:
        yield client


@pytest.fixture
def where(api) -> tuple[str, str, str]:
    """(data center, GPU type id with stock there, another data center), read from the sandbox catalog."""
    from pistachio_infra.stacks.placement import pick_data_center

    gpus = api.list_gpu_types()
    dc = pick_data_center(gpus, [g.id for g in gpus])
    gpu = next(g.id for g in sorted(gpus, key=lambda g: g.secure_price or 99)
               if any(d.data_center_id == dc and d.stock != "NONE" for d in g.data_centers))
    other = sorted({d.data_center_id for g in gpus for d in g.data_centers} - {dc})[0]
    return dc, gpu, other
