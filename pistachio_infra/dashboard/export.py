"""`dashboard --export DIR`: the same pages as static files (no server, no token) that open from disk.

index.html (Now), money.html, job-<id>.html for every run, character-<job>.html for every job, the bundled static
files under static/ and each run's dataset images under files/job-<id>/ (copied, so the folder can be shared).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .data import DashboardData
from .pages import STATIC_DIR, Links, page_data, render_page, slug


def export(data: DashboardData, dest: Path) -> list[Path]:
    """Write every page under `dest`; returns the HTML files written."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    links = Links(None)
    shutil.copytree(STATIC_DIR, dest / "static", dirs_exist_ok=True)
    written = []

    def write(name: str, page: str, arg: str | None = None) -> None:
        content = page_data(data, page, arg)
        path = dest / name
        path.write_text(render_page(data, page, content, links, arg), encoding="utf-8")
        written.append(path)
        if page == "job":
            folder = dest / "files" / f"job-{content['id']}"
            samples = content.get("samples") or {"rows": [], "sheet": None}
            names = [i["name"] for i in content["dataset"]["images"]] + [
                n for r in samples["rows"] for n in (r["without"], r["with_lora"])] + (
                [samples["sheet"]] if samples["sheet"] else [])
            for name in names:
                source = data.image_path(content["id"], name)
                if source is not None:
                    folder.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, folder / name)

    write("index.html", "now")
    write("money.html", "money")
    for job_id in data.job_ids():
        write(f"job-{job_id}.html", "job", str(job_id))
    for name in data.characters():
        write(f"character-{slug(name)}.html", "character", name)
    return written
