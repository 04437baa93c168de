"""Waiting for SSH readiness and trust-on-first-use host keys, against sandbox pods (real sshd)."""

from __future__ import annotations

import socket
import time

import pytest

from pistachio_infra.remote import HostKeyMismatchError, Remote, SshNotReadyError
from pistachio_infra.remote.hostkeys import fingerprint

from .conftest import connect, free_port


def test_waits_for_an_sshd_that_starts_late(make_pod, ssh_key, store):
    pod = make_pod(start=False)
    timer = pod.start_later(1.5)
    started = time.monotonic()
    try:
        with connect(pod, ssh_key, store) as remote:
            waited = time.monotonic() - started
            assert remote.run("echo up").stdout == "up\n"
    finally:
        timer.join()
    assert waited >= 1.4


def test_gives_up_with_a_clear_error_when_nothing_listens(ssh_key, store):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SshNotReadyError) as err:
        Remote.connect(pod_id="pod-dead", host="127.0.0.1", port=port, key_path=ssh_key[0], store=store, timeout=1.5)
    assert time.monotonic() - started < 30  # gave up after its 1.5 s (with slack for a loaded machine), no retries
    message = str(err.value)
    assert "pod-dead" in message and f"127.0.0.1:{port}" in message and "1.5s" in message
    assert "connection refused" in message
    assert "pistachio-infra down pod-dead" in message  # the fix names the way out
    assert store.host_key("pod-dead") is None


def test_a_port_that_never_sends_a_banner_is_not_ready(ssh_key, store):
    with socket.socket() as silent:  # the kernel completes the TCP handshake; nobody ever speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = time.monotonic()
        with pytest.raises(SshNotReadyError) as err:
            Remote.connect(pod_id="pod-mute", host="127.0.0.1", port=silent.getsockname()[1], key_path=ssh_key[0],
                           store=store, timeout=2)  # fmt: skip
    assert time.monotonic() - started < 30  # gave up after its 2 s (with slack for a loaded machine)
    assert "no SSH handshake completed" in str(err.value)


def test_host_key_is_pinned_on_first_connect_and_a_changed_key_is_refused(make_pod, ssh_key, store):
    pod = make_pod("pod-tofu")
    first_key = pod.host_key()
    with connect(pod, ssh_key, store):
        pass
    assert store.host_key("pod-tofu") == first_key
    with connect(pod, ssh_key, store):  # same key again: accepted
        pass

    pod.rebuild_with_new_host_key()
    new_key = pod.host_key()
    assert new_key != first_key
    started = time.monotonic()
    with pytest.raises(HostKeyMismatchError) as err:
        connect(pod, ssh_key, store, timeout=30)
    assert time.monotonic() - started < 20, "a host-key mismatch must fail at once, not be retried for 30 s"
    message = str(err.value)
    assert fingerprint(first_key[1]) in message and fingerprint(new_key[1]) in message
    assert store.host_key("pod-tofu") == first_key  # the pin did not move

    # pins are per pod id: another pod behind the same address (RunPod reuses IPs and ports) gets its own pin
    with connect(pod, ssh_key, store, pod_id="pod-other") as other:
        assert other.run("true").ok
    assert store.host_key("pod-other") == new_key


def test_reconnect_uses_the_same_pin(pod, remote):
    remote.reconnect(timeout=10)
    assert remote.run("echo again").stdout == "again\n"
    pod.rebuild_with_new_host_key()
    with pytest.raises(HostKeyMismatchError):
        remote.reconnect(timeout=10)


def test_missing_client_key_is_a_clear_error(pod, store, tmp_path):
    with pytest.raises(SshNotReadyError, match="does not exist"):
        Remote.connect(pod_id="p", host="127.0.0.1", port=pod.port, key_path=tmp_path / "nope", store=store)


def test_a_key_the_pod_does_not_trust_is_named_in_the_error(pod, store, tmp_path):
    from pistachio_infra.pods.sshkeys import ensure_key_pair

    stranger = ensure_key_pair(tmp_path / "stranger" / "id_ed25519")
    with pytest.raises(SshNotReadyError, match="refused our SSH key"):
        Remote.connect(pod_id=pod.pod_id, host="127.0.0.1", port=pod.port, key_path=stranger, store=store, timeout=1.5)
