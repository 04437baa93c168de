"""The sandbox's stand-in for the `runpod/pytorch` pod image: a Python environment for pod sessions.

A pod session finds `python`, `python3`, `pip` and a `deepspeed` launcher first on its PATH (`PodImage.bin_dir`).
The environment holds what the stand-in repos and our pod bootstrap import (numpy, safetensors, tensorboard,
huggingface_hub, pillow, packaging and their dependencies), so `pip install -r requirements.txt` of a stand-in
repo finds everything already satisfied. Nothing is downloaded: the packages are hard-linked (or copied) from the
environment pistachio-infra itself runs in, at the same versions, and pip comes from the interpreter's bundled
`ensurepip` wheel. pip is configured with `no-index`, so anything the image lacks fails at once instead of waiting
on a network the sandbox does not have.

The build is keyed by the interpreter and the package versions, done once per cache dir under a file lock, and
reused while the key matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import MissingToolError

# What a pod needs importable (the stand-in repos and the pod bootstrap); their dependencies come along.
IMAGE_PACKAGES = ("numpy", "safetensors", "tensorboard", "huggingface_hub", "pillow", "packaging")
IMAGE_FORMAT = 1  # bump when the layout of a built image changes

DEEPSPEED_LAUNCHER = '''\
#!{python}
"""Stand-in for DeepSpeed's `deepspeed` launcher (single node): runs the user script with this image's python.

Accepts `deepspeed [--num_gpus=N] [--num_nodes=1] [--master_port=P] [--master_addr=A] script.py [script args]`
and, like the real launcher, passes `--local_rank=0` first and sets RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/
MASTER_PORT. The script replaces this process, so signals reach it directly.
"""
import os
import sys

VALUE_OPTIONS = {{"--num_gpus", "--num_nodes", "--master_port", "--master_addr", "--include", "--exclude",
                 "--hostfile", "--launcher", "--node_rank"}}
FLAG_OPTIONS = {{"--no_local_rank", "--force_multi", "--no_python", "--module"}}


def main(argv):
    opts = {{}}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        name, eq, value = argv[i].partition("=")
        if name in FLAG_OPTIONS:
            opts[name] = True
            i += 1
        elif name in VALUE_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    sys.exit(f"deepspeed: error: argument {{name}}: expected one argument")
                value = argv[i + 1]
                i += 1
            opts[name] = value
            i += 1
        else:
            sys.exit(f"deepspeed: error: unrecognized arguments: {{argv[i]}}")
    if i >= len(argv):
        sys.exit("deepspeed: error: the following arguments are required: user_script, user_args")
    script, user_args = argv[i], argv[i + 1 :]
    num_gpus = int(opts.get("--num_gpus", "1"))
    if num_gpus != 1:
        sys.exit(f"deepspeed: the sandbox pod has 1 GPU, --num_gpus={{num_gpus}} requested")
    port = str(opts.get("--master_port", "29500"))
    env = dict(os.environ, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_SIZE="1",
               MASTER_ADDR=str(opts.get("--master_addr", "127.0.0.1")), MASTER_PORT=port,
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-u", script]
    if not opts.get("--no_local_rank"):
        cmd.append("--local_rank=0")
    cmd += user_args
    print(f"[INFO] [launch.py] cmd = {{' '.join(cmd)}}", flush=True)
    os.execve(sys.executable, cmd, env)


if __name__ == "__main__":
    main(sys.argv[1:])
'''

PIP_CONF = """\
[global]
no-index = true
disable-pip-version-check = true
no-input = true
"""


@dataclass(frozen=True)
class PodImage:
    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin_dir / "python"

    @property
    def site_packages(self) -> Path:
        return self.root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def container(self, dest: Path) -> Path:
        """A pod's own Python, made fresh at every pod start: what a container's writable layer is to the image.
        A venv over this image (its packages importable through a .pth) with its own site-packages, so what a
        bootstrap installs (flash-attn) lands in this pod only and is gone when the pod is replaced. Returns its
        bin folder, which goes first on the pod's PATH (python, pip, deepspeed)."""
        shutil.rmtree(dest, ignore_errors=True)
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(dest)
        py = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = dest / "lib" / py / "site-packages"
        (site / "_pistachio_image.pth").write_text(f"{self.site_packages}\n")
        shutil.copy(self.root / "pip.conf", dest / "pip.conf")
        bin_dir = dest / "bin"
        pip = bin_dir / "pip"
        pip.write_text(CONSOLE_SCRIPT.format(python=bin_dir / "python", module="pip._internal.cli.main",
                                             attr_head="main", attr="main"))
        pip.chmod(0o755)
        launcher = bin_dir / "deepspeed"
        launcher.write_text(DEEPSPEED_LAUNCHER.format(python=bin_dir / "python"))
        launcher.chmod(0o755)
        return bin_dir

    @classmethod
    def ensure(cls, cache_dir: Path) -> PodImage:
        """The image under `cache_dir`, building it first if no complete build with the current key exists."""
        from filelock import FileLock

        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        dists = _closure(IMAGE_PACKAGES)
        key = _image_key(dists)
        root = cache_dir / f"pod-image-{key}"
        marker = root / ".complete"
        if marker.exists():
            return cls(root)
        with FileLock(str(cache_dir / ".pod-image.lock")):
            if not marker.exists():
                shutil.rmtree(root, ignore_errors=True)
                _build(root, dists)
                marker.write_text(json.dumps({d.name: d.version for d in dists}, indent=1, sort_keys=True))
        return cls(root)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need, following their (marker-filtered, extra-free) requirements."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise MissingToolError(
                f"the sandbox pod image needs the Python package {name!r}, which is not installed",
                "reinstall pistachio-infra with its dependencies (`uv sync` in a checkout)",
            ) from exc
        found[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(found.values(), key=lambda d: _norm(d.metadata["Name"]))


def _image_key(dists: list[metadata.Distribution]) -> str:
    ident = [IMAGE_FORMAT, sys.version, _base_python()]
    ident += sorted(f"{_norm(d.metadata['Name'])}=={d.version}" for d in dists)
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


def _base_python() -> str:
    """The real interpreter behind this (possibly virtual) environment."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base).resolve())


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        return
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _install_dist(dist: metadata.Distribution, site: Path) -> None:
    """Places one installed distribution's files (package + dist-info) into `site`, by hard link where possible."""
    src_site = Path(str(dist.locate_file("")))
    for entry in dist.files or []:
        rel = Path(str(entry))
        if rel.is_absolute() or ".." in rel.parts:
            continue  # console scripts in ../../bin and caches are not part of the importable package
        src = src_site / rel
        if src.is_file():
            _link_or_copy(src, site / rel)
    # dist-info: rewrite INSTALLER so pip in the pod treats these like any installed package
    metadata_files = [f for f in dist.files or [] if str(f).endswith(".dist-info/METADATA")]
    info_dir = (site / str(metadata_files[0])).parent if metadata_files else None
    if info_dir is not None:
        (info_dir / "INSTALLER").unlink(missing_ok=True)  # a hard link: never write through it
        (info_dir / "INSTALLER").write_text("pistachio-sandbox\n")


CONSOLE_SCRIPT = """\
#!{python}
import sys
from {module} import {attr_head}
if __name__ == "__main__":
    sys.exit({attr}())
"""


def _install_scripts(dist: metadata.Distribution, bin_dir: Path) -> None:
    """Console scripts (`hf`, `tensorboard`, …) as an installer would write them, pointing at the image's python."""
    for ep in dist.entry_points.select(group="console_scripts"):
        module, _, attr = ep.value.partition(":")
        attr = attr.strip() or "main"
        script = bin_dir / ep.name
        script.write_text(
            CONSOLE_SCRIPT.format(python=bin_dir / "python", module=module.strip(), attr_head=attr.split(".")[0],
                                  attr=attr)
        )
        script.chmod(0o755)


def _install_pip(root: Path, site: Path) -> None:
    bundled = Path(sysconfig.get_paths(vars={"base": sys.base_prefix})["stdlib"]) / "ensurepip" / "_bundled"
    wheels = sorted(bundled.glob("pip-*.whl"))
    uv = shutil.which("uv")
    if wheels and uv:
        subprocess.run(
            [uv, "pip", "install", "--offline", "--quiet", "--no-deps", "--python", str(root / "bin" / "python"),
             str(wheels[-1])],
            check=True, capture_output=True,
        )
    else:
        subprocess.run([str(root / "bin" / "python"), "-m", "ensurepip", "--default-pip"], check=True,
                       capture_output=True)


def _build(root: Path, dists: list[metadata.Distribution]) -> None:
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(root)
    py = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = root / "lib" / py / "site-packages"
    for dist in dists:
        _install_dist(dist, site)
        _install_scripts(dist, root / "bin")
    _install_pip(root, site)
    (root / "pip.conf").write_text(PIP_CONF)
    launcher = root / "bin" / "deepspeed"
    launcher.write_text(DEEPSPEED_LAUNCHER.format(python=root / "bin" / "python"))
    launcher.chmod(0o755)
