"""Remote execution on pods over SSH: wait for readiness, pinned host keys, commands, detached jobs, transfers.

    from pistachio_infra.remote import Remote
    with Remote.connect(pod_id=..., host=..., port=..., key_path=..., store=...) as pod:
        pod.put_tree(dataset, f"{pod.workspace}/dataset")
        pod.start_detached("train", "python train.py", env={"WANDB_API_KEY": key})
        code = pod.follow("train", on_output=print)

Names are resolved lazily so that importing the errors does not import fabric/paramiko.

Fabric's `Connection` owns the SSH transport, the host-key check and `sftp()`; its `run`/`put`/`get` are not used
where they have no answer: a command's text (and the API keys it exports) travels on the channel's stdin, never on the
pod's command line where Fabric's `run` puts it (channel.py); detached jobs are re-attached and followed from a byte
offset after a dropped connection (jobs.py); trees move as one tar stream checked against a sha256 manifest, and single
files are hashed and reported while they stream, which Fabric's one-file `put`/`get` do not do (transfer.py).

May import: credentials, errors, state. Nothing about pods, RunPod or the pipeline: it is plain SSH."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Remote, RunResult
    from .errors import (
        HostKeyMismatchError,
        RemoteCommandError,
        RemoteJobError,
        SshConnectionLostError,
        SshNotReadyError,
        TransferError,
    )
    from .jobs import DetachedJob
    from .transfer import TransferStats

_WHERE = {
    "Remote": "connection",
    "RunResult": "connection",
    "DetachedJob": "jobs",
    "TransferStats": "transfer",
    "HostKeyMismatchError": "errors",
    "RemoteCommandError": "errors",
    "RemoteJobError": "errors",
    "SshConnectionLostError": "errors",
    "SshNotReadyError": "errors",
    "TransferError": "errors",
}

__all__ = [
    "DetachedJob",
    "HostKeyMismatchError",
    "Remote",
    "RemoteCommandError",
    "RemoteJobError",
    "RunResult",
    "SshConnectionLostError",
    "SshNotReadyError",
    "TransferError",
    "TransferStats",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
