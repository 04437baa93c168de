"""The sandbox's package index: a PEP 503 "simple" index over HTTP (routes on the sandbox's API server, under
/pypi/) serving
- the stand-in wheels that a pod bootstrap installs and the pod image lacks (today: flash-attn, whose stand-in
  package is standins/flash_attn/). The bootstrap downloads them for real, by URL, with pip's hash check, exactly as
  it downloads the pinned release asset from GitHub on RunPod; only the URL and the sha256 differ;
- what PyPI serves a managed campaign's controller pod (campaign/managed.py): every distribution installed beside
  the sandbox (the project's lock, so pistachio-infra's dependencies with their extras), at that version, as a
  wheel. The sandbox has no
  network, so each wheel is rebuilt from the installed files (its dist-info's RECORD and WHEEL tags), on first
  request, and cached; pip installs them from `simple/<project>/` like from pypi.org/simple (PEP 503 pages with
  #sha256= fragments, which pip checks).

Stand-in wheels are built deterministically (fixed zip dates, sorted entries), so their sha256 is the same on every
machine.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = "/pypi"
ZIP_DATE = (2025, 8, 15, 0, 0, 0)


@dataclass(frozen=True)
class StandinWheel:
    project: str  # the PEP 503 name, e.g. flash-attn
    version: str
    package_dir: Path  # the importable package's source folder

    @property
    def dist(self) -> str:
        return self.project.replace("-", "_")

    @property
    def filename(self) -> str:
        return f"{self.dist}-{self.version}-py3-none-any.whl"


STANDIN_WHEELS = {"flash-attn": StandinWheel("flash-attn", "2.8.3+sandbox", HERE / "standins" / "flash_attn" /
                                             "flash_attn")}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel: StandinWheel, dest: Path) -> tuple[Path, str]:
    """Writes `wheel` into `dest`; returns its path and sha256 (hex)."""
    info = f"{wheel.dist}-{wheel.version}.dist-info"
    files: dict[str, bytes] = {}
    for src in sorted(wheel.package_dir.rglob("*.py")):
        files[f"{wheel.package_dir.name}/{src.relative_to(wheel.package_dir).as_posix()}"] = src.read_bytes()
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {wheel.project}\nVersion: {wheel.version}\n"
                                 "Summary: pistachio-infra sandbox stand-in\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: pistachio-sandbox\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel.filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_dists(root: str = "pistachio-infra") -> dict[str, metadata.Distribution]:
    """PEP 503 name -> installed distribution, for every distribution installed beside the sandbox (the lock's
    packages, extras included: pip asks for what `aiohttp[speedups]` needs too), except `root` itself (the client
    ships its own wheel)."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = _canonical(dist.metadata["Name"] or "")
        if name and name != _canonical(root) and name not in found:
            found[name] = dist
    return found


def _wheel_name(dist: metadata.Distribution) -> str:
    """`{name}-{version}-{python tags}-{abi tags}-{platform tags}.whl` from the installed WHEEL file's Tag lines
    (compressed tag sets, PEP 425)."""
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")] or ["py3-none-any"]
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    escaped = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return f"{escaped}-{dist.version}-{'-'.join('.'.join(p) for p in parts)}.whl"


SKIPPED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def installed_wheel(dist: metadata.Distribution, dest: Path) -> tuple[Path, str]:
    """The installed distribution `dist` as a wheel in `dest` (built once per name and version); its path and
    sha256. Files outside site-packages (console scripts: pip writes them again from entry_points.txt) and byte code
    are left out; RECORD is written anew."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / _wheel_name(dist)
    digest = path.with_name(path.name + ".sha256")
    if path.is_file() and digest.is_file():
        return path, digest.read_text().strip()
    entries: list[tuple[str, bytes]] = []
    info_dir = None
    for item in sorted(dist.files or [], key=str):
        rel = str(item)
        if rel.startswith("..") or "__pycache__" in rel or rel.endswith(".pyc"):
            continue
        head, _, tail = rel.partition("/")
        if head.endswith(".dist-info"):
            info_dir = head
            if tail in SKIPPED:
                continue
        source = Path(dist.locate_file(item))
        if source.is_file():
            entries.append((rel, source.read_bytes()))
    if info_dir is None:
        raise FileNotFoundError(f"{dist.metadata['Name']} has no dist-info among its installed files")
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    entries.append((f"{info_dir}/RECORD", (record + f"{info_dir}/RECORD,,\n").encode()))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    digest.write_text(sha)
    return path, sha


def build_index(dest: Path) -> dict[str, tuple[Path, str]]:
    """Every stand-in wheel built into `dest`: project -> (path, sha256)."""
    return {name: build_wheel(wheel, dest) for name, wheel in STANDIN_WHEELS.items()}


def wheel_pins(built: dict[str, tuple[Path, str]], base_url: str) -> dict[str, dict[str, str]]:
    """What info.json records (the client's `Cloud.wheel_overrides`): project -> {url, sha256}."""
    return {name: {"url": f"{base_url}{PREFIX}/packages/{path.name}", "sha256": sha}
            for name, (path, sha) in built.items()}


def index_url(base_url: str) -> str:
    """The PEP 503 index root (pip's --index-url) of the sandbox at `base_url`."""
    return f"{base_url}{PREFIX}/simple/"


def routes(built: dict[str, tuple[Path, str]], deps_dir: Path | None = None) -> list:
    """GET /pypi/simple/, /pypi/simple/<project>/ (PEP 503 pages with #sha256= fragments), /pypi/packages/<file>.
    With `deps_dir`, the installed dependencies of pistachio-infra are served too (built there on first request)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse, HTMLResponse, Response
    from starlette.routing import Route

    deps: dict[str, metadata.Distribution] | None = None
    lock = threading.Lock()

    def dependencies() -> dict[str, metadata.Distribution]:
        nonlocal deps
        with lock:
            if deps is None:
                deps = dependency_dists() if deps_dir is not None else {}
            return deps

    def dependency(name: str) -> tuple[Path, str] | None:
        dist = dependencies().get(name)
        if dist is None or deps_dir is None:
            return None
        with lock:  # one build at a time; a second request for the same wheel finds it cached
            return installed_wheel(dist, deps_dir)

    def page(title: str, links: list[tuple[str, str]]) -> HTMLResponse:
        body = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br/>\n' for href, text in links)
        return HTMLResponse(f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head><body>\n"
                            f"{body}</body></html>\n")

    async def root(request):
        names = sorted({*built, *(await run_in_threadpool(dependencies))})
        return page("Simple index", [(f"{name}/", name) for name in names])

    async def project(request):
        name = _canonical(request.path_params["project"])
        found = built.get(name) or await run_in_threadpool(dependency, name)
        if found is None:
            return Response("not found", status_code=404)
        path, sha = found
        return page(f"Links for {name}", [(f"{PREFIX}/packages/{path.name}#sha256={sha}", path.name)])

    async def package(request):
        files = {path.name: path for path, _ in built.values()}
        wanted = request.path_params["file"]
        path = files.get(wanted)
        if path is None and deps_dir is not None and "/" not in wanted and (deps_dir / wanted).is_file():
            path = deps_dir / wanted
        if path is None:
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    return [Route(f"{PREFIX}/simple/", root), Route(f"{PREFIX}/simple/{{project}}/", project),
            Route(f"{PREFIX}/packages/{{file}}", package)]
