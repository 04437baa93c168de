"""Pods for the remote-execution tests: the sandbox's own PodHost (a real OpenSSH sshd per pod, in its own PID and
mount namespace where the machine allows, with /workspace bind-mounted), started directly without the API server."""

from __future__ import annotations

import getpass
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from pistachio_infra.pods.sshkeys import public_key
from pistachio_infra.remote import Remote
from pistachio_infra.sandbox.image import PodImage
from pistachio_infra.sandbox.podhost import PodHost
from pistachio_infra.state import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pod:
    host: PodHost
    pod_id: str
    port: int
    workspace_dir: Path  # where the workspace is on this machine
    public_key: str

    def start(self) -> None:
        self.host.start(self.pod_id, ssh_port=self.port, public_key=self.public_key, workspace=self.workspace_dir,
                        env={"RUNPOD_POD_ID": self.pod_id, "RUNPOD_TCP_PORT_22": str(self.port)},
                        timeout=120)  # fmt: skip  (returns once sshd answers; a loaded machine may take a while)

    def start_later(self, delay: float) -> threading.Timer:
        timer = threading.Timer(delay, self.start)
        timer.start()
        return timer

    def stop(self) -> None:
        self.host.stop(self.pod_id)

    def drop_connections(self) -> None:
        self.host.drop_connections(self.pod_id)

    def rebuild_with_new_host_key(self) -> None:
        """Same pod id, same address, a different host key (what an impostor, or a rebuilt pod, looks like)."""
        self.stop()
        for key in self.host.pod_dir(self.pod_id).glob("ssh_host_*"):
            key.unlink()
        self.start()

    def host_key(self) -> tuple[str, str]:
        kind, b64 = (self.host.pod_dir(self.pod_id) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return kind, b64

    @property
    def workspace(self) -> str:
        """The workspace path as the pod sees it ("/workspace" when namespaced)."""
        return self.host.workspace_path(self.pod_id) or str(self.workspace_dir)

    def local(self, remote_path: str) -> Path:
        """This machine's path for a path inside the pod's workspace."""
        return self.workspace_dir / PurePosixPath(remote_path).relative_to(self.workspace)


@pytest.fixture(scope="session")
def pod_image(sandbox_image_cache: Path) -> PodImage:
    return PodImage.ensure(sandbox_image_cache)


@pytest.fixture
def ssh_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "client" / "id_ed25519"
    return path, public_key(path)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    s = Store(tmp_path / "home" / "state.sqlite3")
    yield s
    s.close()


@pytest.fixture
def make_pod(tmp_path: Path, pod_image: PodImage, ssh_key: tuple[Path, str]) -> Iterator[Callable[..., Pod]]:
    host = PodHost(tmp_path / "sandbox", pod_image)

    def make(pod_id: str = "pod-a", *, start: bool = True) -> Pod:
        pod = Pod(host, pod_id, free_port(), tmp_path / "volumes" / pod_id, ssh_key[1])
        if start:
            pod.start()
        return pod

    yield make
    host.stop_all()  # kills every sshd and every process the pods started (detached jobs included)


@pytest.fixture
def pod(make_pod: Callable[..., Pod]) -> Pod:
    return make_pod()


def connect(pod: Pod, ssh_key: tuple[Path, str], store: Store, *, pod_id: str | None = None, timeout: float = 20.0,
            port: int | None = None) -> Remote:  # fmt: skip
    return Remote.connect(pod_id=pod_id or pod.pod_id, host="127.0.0.1", port=port or pod.port, key_path=ssh_key[0],
                          store=store, timeout=timeout, user=getpass.getuser())  # fmt: skip


@pytest.fixture
def remote(pod: Pod, ssh_key: tuple[Path, str], store: Store) -> Iterator[Remote]:
    r = connect(pod, ssh_key, store)
    yield r
    r.close()
