"""Install a harvested LoRA into ComfyUI's `models/loras`: a local folder, or a ComfyUI pod over SFTP.

Targets (project.comfyui_loras_dir):
  /path/to/ComfyUI/models/loras            a local folder (created if missing)
  sftp://[user@]host[:port]/abs/path       any SSH host that trusts the pod key (paths.ssh_key_path())
  comfyui:///abs/path                      the env stack's ComfyUI pod (`pistachio-infra env up`), e.g.
                                           comfyui:///workspace/ComfyUI/models/loras
Every copy is atomic (written next to the target, then renamed) and verified by sha256 on the receiving side.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..errors import ConfigError, PistachioError


@dataclass(frozen=True)
class Installed:
    location: str  # a local path, or user@host:port:/path
    sha256: str
    remote: bool


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def install_lora(lora: Path, target: str, *, store=None) -> Installed:  # type: ignore[no-untyped-def]
    """Copy `lora` into the loras folder `target` under its own name; returns where it landed."""
    lora = Path(lora)
    if not lora.is_file():
        raise PistachioError(f"{lora} does not exist", "harvest the LoRA first")
    if "://" not in target:
        return _install_local(lora, Path(target).expanduser())
    parts = urlsplit(target)
    if parts.scheme == "sftp":
        if not parts.hostname or not parts.path.startswith("/"):
            raise ConfigError(f"comfyui_loras_dir {target!r} needs a host and an absolute path",
                              "write it as sftp://root@HOST:PORT/workspace/ComfyUI/models/loras")
        return _install_sftp(lora, parts.username or "root", parts.hostname, parts.port or 22, parts.path, store)
    if parts.scheme == "comfyui":
        from ..stacks import outputs

        env = outputs()
        if env is None or not env.comfyui_ssh_host or not env.comfyui_ssh_port:
            raise ConfigError(f"comfyui_loras_dir {target!r} names the env stack's ComfyUI pod, but none is deployed",
                              "run `pistachio-infra env up` with a ComfyUI pod, or give a local or sftp:// folder")
        path = parts.path or "/workspace/ComfyUI/models/loras"
        return _install_sftp(lora, env.comfyui_ssh_user, env.comfyui_ssh_host, env.comfyui_ssh_port, path, store,
                             pod_id=env.comfyui_pod_id)
    raise ConfigError(f"comfyui_loras_dir {target!r} has an unknown scheme {parts.scheme!r}",
                      "use a local folder, sftp://user@host:port/path or comfyui:///path")


def _install_local(lora: Path, folder: Path) -> Installed:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the ComfyUI loras folder {folder}: {exc}",
                          "fix comfyui_loras_dir in pistachio.toml") from None
    dest = folder / lora.name
    part = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(lora, part)
    want, got = _sha256(lora), _sha256(part)
    if want != got:
        part.unlink(missing_ok=True)
        raise PistachioError(f"copy of {lora.name} into {folder} is corrupted", "check the disk and install again")
    os.replace(part, dest)
    return Installed(str(dest), got, remote=False)


def _install_sftp(lora: Path, user: str, host: str, port: int, path: str, store, pod_id: str | None = None
                  ) -> Installed:  # type: ignore[no-untyped-def]
    from ..paths import ssh_key_path
    from ..remote import Remote
    from ..state import Store

    own = store is None
    store = store or Store()
    try:
        with Remote.connect(pod_id=pod_id or f"sftp:{host}:{port}", host=host, port=port, key_path=ssh_key_path(),
                            store=store, timeout=60, user=user) as remote:
            folder = PurePosixPath(path)
            remote.run(f"mkdir -p -- '{folder}'")
            dest = folder / lora.name
            part = folder / f".{lora.name}.part"
            sftp = remote.sftp()
            sftp.put(str(lora), str(part))
            want = _sha256(lora)
            got = remote.sha256([str(part)]).get(str(part))
            if got != want:
                remote.run(f"rm -f -- '{part}'", check=False)
                raise PistachioError(f"{lora.name} arrived corrupted on {host}:{port}", "install again")
            remote.run(f"mv -f -- '{part}' '{dest}'")
            return Installed(f"{user}@{host}:{port}:{dest}", want, remote=True)
    finally:
        if own:
            store.close()
