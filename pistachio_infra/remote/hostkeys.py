"""Trust on first use, pinned per pod id in the SQLite state (never in ~/.ssh/known_hosts).

RunPod reuses public IPs and ports across pods, so the pin is keyed by pod id, not by host:port. The first key a pod
offers is recorded; any later connection to that pod offering another key is refused with `HostKeyMismatchError`.
"""

from __future__ import annotations

import base64
import hashlib

import paramiko

from ..state import Store
from .errors import HostKeyMismatchError


def fingerprint(key_b64: str) -> str:
    """OpenSSH-style SHA256 fingerprint of a base64 public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko calls this for every host key it does not know; the client's own known-hosts table stays empty."""

    def __init__(self, store: Store, pod_id: str, address: str) -> None:
        self.store = store
        self.pod_id = pod_id
        self.address = address

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = (key.get_name(), key.get_base64())
        pinned = self.store.host_key(self.pod_id)
        if pinned is None:
            self.store.pin_host_key(self.pod_id, *offered)
            pinned = self.store.host_key(self.pod_id)  # another process may have pinned first
        if pinned != offered:
            raise HostKeyMismatchError(
                f"pod {self.pod_id} ({self.address}) offered SSH host key {offered[0]} {fingerprint(offered[1])},"
                f" but {pinned[0]} {fingerprint(pinned[1])} was pinned on first connect",
                "the connection may be intercepted, or this is not the pod you created; refusing to connect."
                " If you trust it, terminate the pod and create a new one (pins are per pod id)",
            )
