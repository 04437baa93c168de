"""The sandbox's package index serves what pypi.org/simple serves a managed campaign's controller (issue 21 item 1):
every distribution installed beside the sandbox, rebuilt as a wheel from its installed files, on PEP 503 pages
whose links carry the `#sha256=` fragment pip checks (PEP 503: "the URL SHOULD include a hash in the form of a URL
fragment"). pip itself downloads and installs them; the lock's versions become pip constraints.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib import metadata

import httpx
import pytest

from pistachio_infra.campaign.managed import lock_constraints
from pistachio_infra.sandbox import pypi


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtual environment with pip and nothing else."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    return root / "bin" / "python"


def _pip(python, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=600, env=env)


def test_installed_distributions_are_served_as_wheels_pip_installs(sandbox, venv, tmp_path):
    index = pypi.index_url(sandbox.graphql_base)
    listing = httpx.get(index, timeout=60)
    assert listing.status_code == 200 and 'href="markupsafe/"' in listing.text
    assert 'href="pistachio-infra/"' not in listing.text  # the client ships its own wheel
    page = httpx.get(f"{index}MarkupSafe/", timeout=120).text  # PEP 503 names are normalised
    href = page.split('href="', 1)[1].split('"', 1)[0]
    url, _, digest = href.partition("#sha256=")
    wheel = httpx.get(f"{sandbox.graphql_base}{url}", timeout=120).content
    assert hashlib.sha256(wheel).hexdigest() == digest
    assert httpx.get(f"{index}no-such-project/", timeout=60).status_code == 404

    version = metadata.version("markupsafe")  # a compiled extension: the wheel keeps its platform tags
    done = _pip(venv, "install", "--index-url", index, f"markupsafe=={version}", "tomlkit")
    assert done.returncode == 0, done.stdout + done.stderr
    check = subprocess.run([str(venv), "-c", "import markupsafe, tomlkit; print(markupsafe.escape('<a>'), "
                                           "tomlkit.__version__)"], capture_output=True, text=True, timeout=60)
    assert check.stdout.split() == ["&lt;a&gt;", metadata.version("tomlkit")], check.stderr


def test_console_scripts_come_back_from_entry_points(venv, tmp_path):
    dist = metadata.distribution("tqdm")  # has a console script outside site-packages, left out of the wheel
    wheel, sha = pypi.installed_wheel(dist, tmp_path / "wheels")
    assert pypi.installed_wheel(dist, tmp_path / "wheels") == (wheel, sha)  # built once
    done = _pip(venv, "install", "--no-deps", str(wheel))
    assert done.returncode == 0, done.stderr
    ran = subprocess.run([str(venv.parent / "tqdm"), "--version"], capture_output=True, text=True, timeout=60)
    assert ran.stdout.strip() == metadata.version("tqdm")


def test_the_lock_becomes_pip_constraints():
    lines = lock_constraints().splitlines()
    pins = dict(line.split("==") for line in lines)
    assert pins["runpod"] == metadata.version("runpod") and pins["click"] == metadata.version("click")
    assert "pistachio-infra" not in pins  # the project itself is the wheel being installed
