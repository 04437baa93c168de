"""The client's ed25519 key pair (private key in OpenSSH format, mode 0600; public key next to it with `.pub`)."""

from __future__ import annotations

import os
from pathlib import Path


def generate_keypair(path: Path, comment: str = "pistachio-infra") -> str:
    """Write a new ed25519 key pair at `path` / `path.pub` and return the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    line = f"{public.decode()} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def ensure_keypair(path: Path) -> str:
    """The public key line of the pair at `path`, generating the pair first if it does not exist."""
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    return generate_keypair(path)
