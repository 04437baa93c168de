"""File transfers with sha256 manifests: unchanged files are not sent again and every received file is verified.

Round trips are what cost time on a pod across an ocean, so trees move as one tar stream over one SSH channel:
`put_tree` is three round trips whatever the file count (hash what is there, stream what changed, verify), and
`get_tree` four (list, hash, stream, nothing else). Single large files (`get_file`) go over SFTP with prefetch.
Hashes on the pod come from `sha256sum`, many files per call.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

import paramiko

from .channel import EVAL_STDIN, ExecResult, close_quietly, collect, reason
from .errors import RemoteCommandError, SshConnectionLostError, TransferError
from .progress import byte_progress

if TYPE_CHECKING:
    from .connection import Remote

#: Bytes of quoted paths per sha256sum call (well under ARG_MAX).
ARGS_BUDGET = 256 * 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class TransferStats:
    files: int  # files considered (after `include`)
    sent: int  # files transferred
    unchanged: int  # files skipped because both sides already had the same sha256
    bytes: int  # payload bytes transferred
    seconds: float
    round_trips: int  # SSH channels / SFTP sessions opened by this transfer
    paths: tuple[str, ...] = field(default=())  # relative paths transferred


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _unescape_sha256sum_name(name: str) -> str:
    # coreutils escapes "\" and newlines in names (and flags such lines with a leading backslash)
    out, i = [], 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name):
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(name[i + 1], name[i + 1]))
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def _batches(paths: list[str]) -> Iterable[list[str]]:
    batch, size = [], 0
    for p in paths:
        cost = len(shlex.quote(p)) + 1
        if batch and size + cost > ARGS_BUDGET:
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += cost
    if batch:
        yield batch


def remote_sha256(remote: Remote, paths: list[str]) -> dict[str, str]:
    """sha256 of each existing regular file among `paths` (missing ones are left out), one round trip per ~256 KiB
    of path names."""
    result: dict[str, str] = {}
    for batch in _batches(paths):
        args = " ".join(shlex.quote(p) for p in batch)
        raw = remote.exec(f"sha256sum -- {args} 2>/dev/null; true", timeout=3600)
        for line in raw.stdout.decode("utf-8", "surrogateescape").splitlines():
            escaped = line.startswith("\\")
            if escaped:
                line = line[1:]
            digest, name = line[:64], line[66:]
            if escaped:
                name = _unescape_sha256sum_name(name)
            result[name] = digest
    return result


def _rel_ok(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not PurePosixPath(rel).is_absolute() and ".." not in parts


def local_manifest(root: Path, include: Callable[[str], bool] | None = None) -> dict[str, tuple[str, int]]:
    """relative posix path -> (sha256, size) for every regular file under `root` (symlinks to files followed)."""
    if not root.is_dir():
        raise TransferError(f"{root} is not a folder", "pass the folder to upload")
    manifest: dict[str, tuple[str, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            path = Path(dirpath) / fname
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if include is None or include(rel):
                manifest[rel] = (file_sha256(path), path.stat().st_size)
    return manifest


class _ChannelWriter:
    """A write-only file object over an SSH channel's stdin, for tarfile's streaming mode."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan

    def write(self, data: bytes) -> int:
        self.chan.sendall(data)
        return len(data)


def put_tree(
    remote: Remote,
    local: Path,
    remote_dir: str,
    *,
    progress: bool = True,
    include: Callable[[str], bool] | None = None,
) -> TransferStats:
    started, trips0 = time.monotonic(), remote.round_trips
    manifest = local_manifest(local, include)
    base = remote_dir.rstrip("/") or "/"
    there = remote.sha256([f"{base}/{rel}" for rel in manifest]) if manifest else {}
    changed = [rel for rel, (digest, _) in manifest.items() if there.get(f"{base}/{rel}") != digest]
    total = sum(manifest[rel][1] for rel in changed)
    if changed:
        chan = remote.channel(timeout=120)
        try:
            q = shlex.quote(base)
            chan.exec_command(f"mkdir -p -- {q} && tar -x --no-same-owner -f - -C {q}")
            tar_out = _ChannelWriter(chan)
            with (
                byte_progress(f"upload → {remote.pod_id}", total, progress) as advance,
                tarfile.open(fileobj=tar_out, mode="w|", format=tarfile.PAX_FORMAT) as tar,  # type: ignore[call-overload]
            ):
                for rel in changed:
                    path = local / rel
                    info = tarfile.TarInfo(rel)
                    st = path.stat()
                    info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), st.st_mode & 0o755 | 0o644
                    with path.open("rb") as fh:
                        tar.addfile(info, _CountingReader(fh, advance))
            chan.shutdown_write()
            result = collect(chan, remote.pod_id, timeout=600)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _lost(remote, exc) from exc
        finally:
            close_quietly(chan)
        _check_tar(remote, result, f"tar -x into {base}")
        received = remote.sha256([f"{base}/{rel}" for rel in changed])
        bad = [rel for rel in changed if received.get(f"{base}/{rel}") != manifest[rel][0]]
        if bad:
            raise TransferError(
                f"{len(bad)} file(s) differ on pod {remote.pod_id} after upload: {', '.join(bad[:5])}",
                "check free space on the pod (`df -h`) and upload again; unchanged files will be skipped",
            )
    return TransferStats(
        files=len(manifest),
        sent=len(changed),
        unchanged=len(manifest) - len(changed),
        bytes=total,
        seconds=time.monotonic() - started,
        round_trips=remote.round_trips - trips0,
        paths=tuple(changed),
    )


class _CountingReader:
    def __init__(self, fh: BinaryIO, advance: Callable[[int], None]) -> None:
        self.fh = fh
        self.advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.advance(len(data))
        return data


class _HashingWriter:
    def __init__(self, fh: BinaryIO, advance: Callable[[int], None]) -> None:
        self.fh = fh
        self.advance = advance
        self.h = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.advance(len(data))
        return self.fh.write(data)


def _lost(remote: Remote, exc: BaseException) -> SshConnectionLostError:
    if isinstance(exc, SshConnectionLostError):
        return exc
    return SshConnectionLostError(
        f"the SSH connection to pod {remote.pod_id} dropped during a transfer: {reason(exc)}",
        "run it again: files that arrived intact are not sent twice",
    )


def _check_tar(remote: Remote, result: ExecResult, command: str) -> None:
    """Raise RemoteCommandError when the pod's side of a tar stream failed."""
    if result.exit_code != 0:
        raise RemoteCommandError(
            pod_id=remote.pod_id,
            command=command,
            exit_code=result.exit_code,
            stderr_tail=result.stderr.decode("utf-8", "replace")[-1500:],
        )


def _same_file(path: Path, digest: str) -> bool:
    return path.is_file() and file_sha256(path) == digest


def _part_path(local: Path) -> Path:
    return local.with_name(local.name + ".part")


def get_file(
    remote: Remote, remote_path: str, local: Path, *, expected_sha256: str | None = None, progress: bool = True
) -> str:
    """Download atomically (to `<local>.part`, then rename) and verify against the sha256 computed on the pod."""
    pod_hash = remote.sha256([remote_path]).get(remote_path)
    if pod_hash is None:
        raise TransferError(f"{remote_path} does not exist on pod {remote.pod_id}", "check the path on the pod")
    if expected_sha256 is not None and pod_hash != expected_sha256.lower():
        raise TransferError(
            f"{remote_path} on pod {remote.pod_id} has sha256 {pod_hash}, expected {expected_sha256}",
            "the file on the pod is not the one recorded; rerun the stage that produces it",
        )
    local.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(local)
    try:
        try:
            sftp = remote.sftp()
            size = sftp.stat(remote_path).st_size or 0
            with (
                byte_progress(f"download {PurePosixPath(remote_path).name}", size, progress) as advance,
                part.open("wb") as fh,
            ):
                writer = _HashingWriter(fh, advance)
                sftp.getfo(remote_path, writer)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if remote.connected:
                raise TransferError(f"cannot download {remote_path} from pod {remote.pod_id}: {exc}",
                                    "check the path and its permissions on the pod") from exc  # fmt: skip
            raise _lost(remote, exc) from exc
        got = writer.h.hexdigest()
        if got != pod_hash:
            raise TransferError(
                f"{remote_path} from pod {remote.pod_id} arrived corrupted (sha256 {got}, pod says {pod_hash})",
                "download it again; if it keeps failing, the file is being written on the pod",
            )
        os.replace(part, local)
    finally:
        part.unlink(missing_ok=True)
    return pod_hash


def get_tree(
    remote: Remote,
    remote_dir: str,
    local: Path,
    *,
    include: Callable[[str], bool] | None = None,
    progress: bool = True,
) -> TransferStats:
    """Download the files under `remote_dir` that `include(relative_path)` accepts and that differ locally."""
    started, trips0 = time.monotonic(), remote.round_trips
    base = remote_dir.rstrip("/") or "/"
    listing = remote.exec(f"cd -- {shlex.quote(base)} && find . -type f -printf '%s %P\\0'", timeout=600)
    if listing.exit_code != 0:
        raise TransferError(
            f"cannot list {base} on pod {remote.pod_id}: {listing.stderr.decode('utf-8', 'replace').strip()}",
            "check the path on the pod",
        )
    sizes: dict[str, int] = {}
    for entry in listing.stdout.split(b"\0"):
        if not entry:
            continue
        size, _, rel_b = entry.partition(b" ")
        rel = rel_b.decode("utf-8", "surrogateescape")
        if _rel_ok(rel) and (include is None or include(rel)):
            sizes[rel] = int(size)
    wanted = sorted(sizes)
    hashes = remote.sha256([f"{base}/{rel}" for rel in wanted]) if wanted else {}
    expected = {rel: hashes[f"{base}/{rel}"] for rel in wanted if f"{base}/{rel}" in hashes}
    needed = [rel for rel, digest in expected.items() if not _same_file(local / rel, digest)]
    total = sum(sizes[rel] for rel in needed)
    if needed:
        args = " ".join(shlex.quote(f"./{rel}") for rel in needed)
        chan = remote.channel(timeout=120)
        try:
            chan.exec_command(EVAL_STDIN)
            chan.sendall(f"cd -- {shlex.quote(base)} && exec tar -c -f - -- {args}\n".encode())
            chan.shutdown_write()
            stream = chan.makefile("rb")
            with byte_progress(f"download ← {remote.pod_id}", total, progress) as advance:
                _extract_verified(stream, local, expected, set(needed), advance, remote.pod_id)
            result = collect(chan, remote.pod_id, timeout=600)
        except (OSError, EOFError, paramiko.SSHException, tarfile.ReadError) as exc:
            raise _lost(remote, exc) from exc
        finally:
            close_quietly(chan)
        _check_tar(remote, result, f"tar -c of {len(needed)} file(s) under {base}")
    return TransferStats(
        files=len(wanted),
        sent=len(needed),
        unchanged=len(wanted) - len(needed),
        bytes=total,
        seconds=time.monotonic() - started,
        round_trips=remote.round_trips - trips0,
        paths=tuple(needed),
    )


def _extract_verified(
    stream: BinaryIO,
    local: Path,
    expected: dict[str, str],
    needed: set[str],
    advance: Callable[[int], None],
    pod_id: str,
) -> None:
    received: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = member.name.removeprefix("./")
            if not member.isfile() or rel not in needed:
                continue
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            part = _part_path(target)
            src = tar.extractfile(member)
            assert src is not None
            try:
                with part.open("wb") as fh:
                    writer = _HashingWriter(fh, advance)
                    for block in iter(lambda: src.read(CHUNK), b""):  # noqa: B023 - consumed in this iteration
                        writer.write(block)
                if writer.h.hexdigest() != expected[rel]:
                    raise TransferError(
                        f"{rel} from pod {pod_id} arrived corrupted (sha256 {writer.h.hexdigest()},"
                        f" pod says {expected[rel]})",
                        "download again; if it keeps failing, the file is being written on the pod",
                    )
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
            received.add(rel)
    missing = needed - received
    if missing:
        raise TransferError(
            f"{len(missing)} file(s) did not arrive from pod {pod_id}: {', '.join(sorted(missing)[:5])}",
            "download again",
        )
