"""Waiting for SSH readiness and trust-on-first-use host keys, against a real sshd."""

from __future__ import annotations

import getpass
import socket
import time

import pytest

from pistachio_infra.remote import HostKeyMismatchError, Remote, SshNotReadyError
from pistachio_infra.remote.hostkeys import fingerprint

from .conftest import free_port


def connect(pod_id, port, ssh_key, store, timeout=20.0):
    return Remote.connect(
        pod_id=pod_id, host="127.0.0.1", port=port, key_path=ssh_key[0], store=store, timeout=timeout,
        user=getpass.getuser(),
    )  # fmt: skip


def test_waits_for_an_sshd_that_starts_late(make_pod, ssh_key, store):
    pod = make_pod(start=False)
    timer = pod.start_later(1.5)
    started = time.monotonic()
    try:
        with connect(pod.pod_id, pod.port, ssh_key, store) as remote:
            waited = time.monotonic() - started
            assert remote.run("echo up").stdout == "up\n"
    finally:
        timer.join()
    assert waited >= 1.4


def test_gives_up_with_a_clear_error_when_nothing_listens(ssh_key, store):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SshNotReadyError) as err:
        connect("pod-dead", port, ssh_key, store, timeout=1.5)
    assert time.monotonic() - started < 6
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
            connect("pod-mute", silent.getsockname()[1], ssh_key, store, timeout=2)
    assert time.monotonic() - started < 10
    assert "no SSH handshake completed" in str(err.value)


def test_host_key_is_pinned_on_first_connect_and_a_changed_key_is_refused(make_pod, ssh_key, store):
    pod = make_pod("pod-tofu")
    first_key = (pod.host_key.with_name(pod.host_key.name + ".pub")).read_text().split()
    with connect(pod.pod_id, pod.port, ssh_key, store):
        pass
    assert store.host_key("pod-tofu") == (first_key[0], first_key[1])
    with connect(pod.pod_id, pod.port, ssh_key, store):  # same key again: accepted
        pass

    pod.stop()
    new_key = pod.new_host_key().split()
    pod.start()
    started = time.monotonic()
    with pytest.raises(HostKeyMismatchError) as err:
        connect(pod.pod_id, pod.port, ssh_key, store, timeout=30)
    assert time.monotonic() - started < 5, "a host-key mismatch must fail at once, not be retried"
    message = str(err.value)
    assert fingerprint(first_key[1]) in message and fingerprint(new_key[1]) in message
    assert store.host_key("pod-tofu") == (first_key[0], first_key[1])  # the pin did not move

    # pins are per pod id: a different pod behind the same address (RunPod reuses IPs and ports) is a new pin
    with connect("pod-other", pod.port, ssh_key, store) as other:
        assert other.run("true").ok
    assert store.host_key("pod-other") == (new_key[0], new_key[1])


def test_reconnect_keeps_using_the_pin(pod, remote, store):
    remote.reconnect(timeout=10)
    assert remote.run("echo again").stdout == "again\n"
    pod.stop()
    pod.new_host_key()
    pod.start()
    with pytest.raises(HostKeyMismatchError):
        remote.reconnect(timeout=10)


def test_missing_client_key_is_a_clear_error(pod, store, tmp_path):
    with pytest.raises(SshNotReadyError, match="does not exist"):
        Remote.connect(pod_id="p", host="127.0.0.1", port=pod.port, key_path=tmp_path / "nope", store=store)
