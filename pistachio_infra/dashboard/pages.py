"""The dashboard's pages, rendered from the package's Jinja templates over `DashboardData`.

The server and `--export` both render through here; only `Links` differs (server URLs carrying the token, or
relative file names that open from disk), so the two show the same content.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .data import DashboardData

PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
POLL_MS = 2000


class NotFound(LookupError):
    pass


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "job"


@dataclass(frozen=True)
class Links:
    """Where each link points: the live server (token in every URL) or an exported folder (`token` None)."""

    token: str | None

    @property
    def static_export(self) -> bool:
        return self.token is None

    def _q(self, path: str) -> str:
        return f"{path}?token={quote(self.token or '')}"

    def now(self) -> str:
        return "index.html" if self.static_export else self._q("/")

    def money(self) -> str:
        return "money.html" if self.static_export else self._q("/money")

    def job(self, job_id: int) -> str:
        return f"job-{job_id}.html" if self.static_export else self._q(f"/job/{job_id}")

    def character(self, name: str) -> str:
        return f"character-{slug(name)}.html" if self.static_export else self._q(f"/character/{quote(name)}")

    def static(self, path: str) -> str:
        return f"static/{path}" if self.static_export else self._q(f"/static/{path}")

    def image(self, job_id: int, name: str) -> str:
        if self.static_export:
            return f"files/job-{job_id}/{quote(name)}"
        return self._q(f"/files/{job_id}/{quote(name)}")

    def poll(self, page: str, arg: str | int | None = None) -> str | None:
        if self.static_export:
            return None
        return self._q(f"/api/{page}" + (f"/{quote(str(arg))}" if arg is not None else ""))


def _usd(value: float | None) -> str:
    from ..money import usd

    return "—" if value is None else usd(value)


def _signed(value: float) -> str:
    from ..money import signed_usd

    return signed_usd(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _loss(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@cache
def environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(usd=_usd, signed=_signed, duration=_duration, loss=_loss)
    return env


def page_data(data: DashboardData, page: str, arg: str | None = None) -> dict[str, Any]:
    """The data of one page; NotFound when the job or character does not exist."""
    if page == "now":
        return data.now()
    if page == "money":
        return data.money()
    if page == "job":
        found = data.job(int(arg)) if arg is not None and str(arg).isdigit() else None
    elif page == "character":
        found = data.character(arg) if arg else None
    else:
        found = None
    if found is None:
        raise NotFound(f"no {page} {arg!r}")
    return found


def is_live(page: str, content: dict[str, Any]) -> bool:
    """Whether the page changes while it is open (the browser polls it then)."""
    return page in ("now", "money") or (page == "job" and content.get("status") == "running") or (
        page == "character" and any(r["status"] == "running" for r in content.get("runs", [])))


def _json_for_html(value: Any) -> str:
    return json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_body(page: str, content: dict[str, Any], links: Links) -> str:
    return environment().get_template(f"{page}_body.html.j2").render(d=content, links=links)


def render_page(data: DashboardData, page: str, content: dict[str, Any], links: Links,
                arg: str | None = None) -> str:
    from markupsafe import Markup

    title = {"now": "Now", "money": "Money", "job": f"{content.get('name')} · run {content.get('id')}",
             "character": f"{content.get('name')} over time"}[page]
    poll = links.poll(page, arg) if is_live(page, content) else None
    return environment().get_template("page.html.j2").render(
        page=page, title=title, d=content, links=links, characters=data.characters(), poll_url=poll,
        poll_ms=POLL_MS, body=Markup(render_body(page, content, links)),
        data_json=Markup(_json_for_html(content)),
    )
