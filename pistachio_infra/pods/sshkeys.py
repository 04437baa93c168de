"""The one SSH key pair every pod trusts: created on first use (by `init` or the first `up`), never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import ssh_key_path


def ensure_key_pair(path: Path | None = None) -> Path:
    """Create an ed25519 key pair at `path` (default paths.ssh_key_path()) unless it exists; return its path.

    The private key is written 0600 in OpenSSH format (usable by both paramiko and the `ssh` client), the public key
    next to it as `<path>.pub`. An existing pair is left alone; a missing `.pub` is regenerated from the private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = path or ssh_key_path()
    pub = path.with_name(path.name + ".pub")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        if not pub.exists():
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
            _write_public(pub, key.public_key())
        return path
    key = Ed25519PrivateKey.generate()
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_bytes)
    _write_public(pub, key.public_key())
    return path


def public_key(path: Path | None = None) -> str:
    """The OpenSSH public key line (`ssh-ed25519 AAAA… pistachio-infra`), creating the pair if needed."""
    private = ensure_key_pair(path)
    return private.with_name(private.name + ".pub").read_text().strip()


def _write_public(pub: Path, public_key) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    pub.write_text(line.decode() + " pistachio-infra\n")
    os.chmod(pub, 0o644)
