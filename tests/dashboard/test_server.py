"""The dashboard server without a training: the token is required on every path, it listens on loopback only,
`--port` is honoured, and an empty state renders in a real browser."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
from helpers import CLI

from .conftest import pixel_variance, wait_js


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def _other_address() -> str | None:
    """This machine's address on a non-loopback interface, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_every_path_needs_the_token_and_it_listens_on_loopback_only(dashboard, tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    d = dashboard()
    assert d.url.startswith("http://127.0.0.1:") and len(d.token) >= 24
    paths = ["/", "/money", "/api/now", "/api/money", "/static/dashboard.js", "/static/uplot/uPlot.iife.min.js"]
    with httpx.Client(timeout=30) as client:
        for path in paths:
            assert client.get(f"{d.base}{path}", params={"token": d.token}).status_code == 200, path
            for params in ({}, {"token": ""}, {"token": d.token[:-1]}, {"token": d.token + "x"}):
                denied = client.get(f"{d.base}{path}", params=params)
                assert denied.status_code == 403, (path, params)
                assert "token" in denied.text and d.token not in denied.text
        assert client.get(f"{d.base}/job/1", params={"token": d.token}).status_code == 404  # no such run: not 500
        assert client.get(f"{d.base}/files/1/x.png", params={"token": d.token}).status_code == 404

    assert _listening(d.port) == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 or ::
    other = _other_address()
    if other is not None:
        with socket.socket() as s:
            s.settimeout(5)
            assert s.connect_ex((other, d.port)) != 0  # refused on the machine's other address

    # a second dashboard gets its own port and its own token; the first one's token does not open it
    second = dashboard()
    assert second.port != d.port and second.token != d.token
    assert httpx.get(f"{second.base}/", params={"token": d.token}, timeout=30).status_code == 403


def test_port_option_and_a_port_in_use_is_a_one_line_error(dashboard, tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.listen(1)
        busy = subprocess.run([CLI, "dashboard", "--no-browser", "--port", str(port)], capture_output=True,
                              text=True, timeout=120)
    assert busy.returncode != 0 and busy.stdout == ""
    assert busy.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")
    d = dashboard("--port", str(port))
    assert d.port == port and httpx.get(d.url, timeout=30).status_code == 200


def test_an_empty_state_renders_in_the_browser(dashboard, browser, tmp_path, monkeypatch):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    d = dashboard()
    browser.get(d.url)
    text = browser.find_element("id", "live").text
    assert "No live pods: nothing is billing." in text and "No job has run yet" in text
    polls = browser.execute_script("return window.dashboard.polls")
    wait_js(browser, f"window.dashboard.polls > {polls}", 60, "the Now page to poll the server")
    assert pixel_variance(browser.get_screenshot_as_png()) > 50
