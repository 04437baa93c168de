"""A real headless Chromium (the distribution's `chromium` + `chromedriver`, installed by scripts/setup.sh) driven by
Selenium, and the `pistachio-infra dashboard` CLI as a subprocess serving the test's PISTACHIO_HOME."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import CLI, confirmed

CHROMIUM = os.environ.get("PISTACHIO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PISTACHIO_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1280, 1600)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            pytest.fail(f"{path} is missing: run scripts/setup.sh (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--allow-file-access-from-files"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Dashboard:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT/?token=…

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def page(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *confirmed(args)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([CLI, *confirmed(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ), start_new_session=True)


def start_dashboard(*args: str) -> Dashboard:
    proc = subprocess.Popen([CLI, "dashboard", "--no-browser", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ), start_new_session=True)
    line = proc.stdout.readline()  # blocks until the socket listens and the URL is printed (or the CLI ended)
    if not line.startswith("dashboard: http://"):
        proc.kill()
        raise AssertionError(f"dashboard did not start (exit {proc.wait()}): {line!r}")
    return Dashboard(proc, line.split(" ", 1)[1].strip())


@pytest.fixture
def dashboard() -> Iterator[Callable[..., Dashboard]]:
    started: list[Dashboard] = []

    def start(*args: str) -> Dashboard:
        started.append(start_dashboard(*args))
        return started[-1]

    yield start
    for d in started:
        if d.proc.poll() is None:
            os.killpg(d.proc.pid, signal.SIGTERM)
        d.proc.wait(timeout=30)


def wait_js(driver, script: str, timeout: float, what: str,  # type: ignore[no-untyped-def]
            proc: subprocess.Popen | None = None):
    """Wait until `script` (a JS expression) returns something truthy in the page and return it; fail early when
    `proc` (the CLI the page is watching) ends first."""
    from selenium.webdriver.support.ui import WebDriverWait

    def check(d):  # type: ignore[no-untyped-def]
        value = d.execute_script(f"return ({script});")
        if not value and proc is not None and proc.poll() is not None:
            raise AssertionError(f"the CLI ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        return value

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(check, message=f"waiting for {what}")


def pixel_variance(png: bytes) -> float:
    """Grey-level variance of a screenshot: 0 for a blank (single-colour) image."""
    import io

    from PIL import Image, ImageStat

    return ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).var[0]
