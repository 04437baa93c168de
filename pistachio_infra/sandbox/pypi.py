"""The sandbox's package index: a PEP 503 "simple" index over HTTP (routes on the sandbox's API server, under
/pypi/) serving the stand-in wheels that a pod bootstrap installs and the pod image lacks (today: flash-attn, whose
stand-in package is standins/flash_attn/). The bootstrap downloads them for real, by URL, with pip's hash check,
exactly as it downloads the pinned release asset from GitHub on RunPod; only the URL and the sha256 differ.

Wheels are built deterministically (fixed zip dates, sorted entries), so their sha256 is the same on every machine.
"""

from __future__ import annotations

import base64
import hashlib
import html
import zipfile
from dataclasses import dataclass
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


def build_index(dest: Path) -> dict[str, tuple[Path, str]]:
    """Every stand-in wheel built into `dest`: project -> (path, sha256)."""
    return {name: build_wheel(wheel, dest) for name, wheel in STANDIN_WHEELS.items()}


def wheel_pins(built: dict[str, tuple[Path, str]], base_url: str) -> dict[str, dict[str, str]]:
    """What info.json records (the client's `Cloud.wheel_overrides`): project -> {url, sha256}."""
    return {name: {"url": f"{base_url}{PREFIX}/packages/{path.name}", "sha256": sha}
            for name, (path, sha) in built.items()}


def routes(built: dict[str, tuple[Path, str]]) -> list:
    """GET /pypi/simple/, /pypi/simple/<project>/ (PEP 503 pages with #sha256= fragments), /pypi/packages/<file>."""
    from starlette.responses import FileResponse, HTMLResponse, Response
    from starlette.routing import Route

    def page(title: str, links: list[tuple[str, str]]) -> HTMLResponse:
        body = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a><br/>\n' for href, text in links)
        return HTMLResponse(f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head><body>\n"
                            f"{body}</body></html>\n")

    async def root(request):
        return page("Simple index", [(f"{name}/", name) for name in sorted(built)])

    async def project(request):
        name = request.path_params["project"].lower().replace("_", "-").replace(".", "-")
        if name not in built:
            return Response("not found", status_code=404)
        path, sha = built[name]
        return page(f"Links for {name}", [(f"{PREFIX}/packages/{path.name}#sha256={sha}", path.name)])

    async def package(request):
        files = {path.name: path for path, _ in built.values()}
        path = files.get(request.path_params["file"])
        if path is None:
            return Response("not found", status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    return [Route(f"{PREFIX}/simple/", root), Route(f"{PREFIX}/simple/{{project}}/", project),
            Route(f"{PREFIX}/packages/{{file}}", package)]
