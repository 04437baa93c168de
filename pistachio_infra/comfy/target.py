"""Where ComfyUI lives: a local folder, or a folder on a pod reached over SSH. Both run the same agent.py.

    LocalTarget(Path("~/ComfyUI"))        inventory in-process, apply in a subprocess
    PodTarget(remote, comfy_dir=None)     agent copied to the pod; apply runs as a detached job (survives SSH drops)

On a pod, ComfyUI itself runs as the detached job "comfyui", started from a launcher that records its command:
`start_comfyui` starts it and `restart_comfyui` stops and starts it again with the same command, then waits until
it answers HTTP on its port.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import PistachioError
from . import agent

AGENT_PREFIX = agent.PREFIX
COMFY_JOB = "comfyui"
INSTALL_JOB = "comfy-install"

EventSink = Callable[[dict[str, Any]], None]
LineSink = Callable[[str], None]


def _dispatch(line: str, on_event: EventSink, on_line: LineSink | None) -> None:
    if line.startswith(AGENT_PREFIX):
        try:
            on_event(json.loads(line[len(AGENT_PREFIX) :]))
            return
        except ValueError:
            pass
    if on_line is not None and line.strip():
        on_line(line)


class LocalTarget:
    def __init__(self, comfy_dir: Path, python: str | None = None) -> None:
        self.comfy_dir = Path(comfy_dir).expanduser().resolve()
        self.python = python or sys.executable
        self.label = str(self.comfy_dir)

    def inventory(self) -> dict[str, Any]:
        return agent.inventory(str(self.comfy_dir))

    def apply(self, plan: dict[str, Any], on_event: EventSink, on_line: LineSink | None = None) -> int:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(plan, fh)
        try:
            proc = subprocess.Popen(
                [sys.executable, agent.__file__, "apply", fh.name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=os.environ.copy(),
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                _dispatch(line.rstrip("\n"), on_event, on_line)
            return proc.wait()
        finally:
            os.unlink(fh.name)

    def restart(self) -> str:
        return "restart ComfyUI to load the new nodes (it runs outside pistachio-infra here)"


class PodTarget:
    def __init__(
        self, remote: Any, comfy_dir: str | None = None, *, env: dict[str, str] | None = None, python: str = "python3"
    ) -> None:
        self.remote = remote
        self.workspace = str(remote.workspace).rstrip("/")
        self.comfy_dir = comfy_dir or f"{self.workspace}/ComfyUI"
        self.env = {k: v for k, v in (env or {}).items() if v}
        self.python = python
        self.state = f"{self.workspace}/.pistachio/comfy"
        self.label = f"pod {remote.pod_id}:{self.comfy_dir}"
        self._agent_written = False

    @property
    def agent_path(self) -> str:
        return f"{self.state}/agent.py"

    def _write(self, files: dict[str, str]) -> None:
        from ..pods.scripts import write_files

        if not self._agent_written:
            files = {self.agent_path: Path(agent.__file__).read_text(), **files}
            self._agent_written = True
        write_files(self.remote, files)

    def inventory(self) -> dict[str, Any]:
        self._write({})
        out = self.remote.run(
            f"{self.python} {shlex.quote(self.agent_path)} inventory {shlex.quote(self.comfy_dir)}", timeout=300
        )
        return json.loads(out.stdout)

    def apply(self, plan: dict[str, Any], on_event: EventSink, on_line: LineSink | None = None) -> int:
        plan_path = f"{self.state}/plan.json"
        self._write({plan_path: json.dumps(plan, indent=1)})
        command = f"{self.python} {shlex.quote(self.agent_path)} apply {shlex.quote(plan_path)}"
        self.remote.start_detached(INSTALL_JOB, command, env=self.env, cwd=self.workspace)
        pending = ""

        def collect(text: str) -> None:
            nonlocal pending
            pending += text
            *lines, pending = pending.split("\n")
            for line in lines:
                _dispatch(line, on_event, on_line)

        code = self.remote.follow(INSTALL_JOB, on_output=collect)
        if pending:
            _dispatch(pending, on_event, on_line)
        return code

    def restart(self) -> str:
        return restart_comfyui(self.remote, self.comfy_dir)


# -- ComfyUI as a detached job on a pod ------------------------------------------------------------------------------
def _launcher_paths(remote: Any) -> tuple[str, str]:
    state = f"{str(remote.workspace).rstrip('/')}/.pistachio/comfy"
    return f"{state}/start-comfyui.sh", f"{state}/comfyui.json"


def start_comfyui(
    remote: Any,
    comfy_dir: str,
    *,
    port: int = 8188,
    python: str = "python3",
    extra_args: str = "",
    timeout: float = 120,
) -> None:
    """Start ComfyUI (`main.py --listen 0.0.0.0 --port PORT`) as the pod's "comfyui" job and wait for its HTTP."""
    from ..pods.scripts import write_files

    launcher, meta = _launcher_paths(remote)
    script = (
        f"cd {shlex.quote(comfy_dir)} || exit 1\n"
        f"exec {python} main.py --listen 0.0.0.0 --port {int(port)} {extra_args}\n"
    )
    write_files(remote, {launcher: script, meta: json.dumps({"comfy_dir": comfy_dir, "port": int(port)})})
    remote.start_detached(COMFY_JOB, f"sh {shlex.quote(launcher)}")
    wait_http(remote, port, timeout)


def restart_comfyui(remote: Any, comfy_dir: str, timeout: float = 120) -> str:
    launcher, meta = _launcher_paths(remote)
    out = remote.run(f"cat {shlex.quote(meta)} 2>/dev/null || true", timeout=60)
    try:
        info = json.loads(out.stdout)
    except ValueError:
        return (
            f"ComfyUI was not started by pistachio-infra on this pod: restart it yourself to load the new nodes "
            f"(cd {comfy_dir} && python main.py --listen)"
        )
    job = remote.job(COMFY_JOB)
    if job is not None and job.running:
        remote.kill_job(COMFY_JOB)
        deadline = time.monotonic() + 30
        while (current := remote.job(COMFY_JOB)) is not None and current.running:
            if time.monotonic() > deadline:
                remote.kill_job(COMFY_JOB, "KILL")
            time.sleep(0.2)
    remote.start_detached(COMFY_JOB, f"sh {shlex.quote(launcher)}")
    wait_http(remote, info["port"], timeout)
    return f"ComfyUI restarted on port {info['port']}"


# A pod whose exposed http ports bind other host ports (the sandbox: every pod on the host's network) names them
# in PISTACHIO_HTTP_PORT_<port>; elsewhere the port is what ComfyUI binds.
_WAIT_HTTP = """
import os, sys, time, urllib.request
port = os.environ.get("PISTACHIO_HTTP_PORT_" + sys.argv[1]) or sys.argv[1]
deadline = time.time() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:%s/system_stats" % port, timeout=2).read()
        break
    except Exception as exc:
        if time.time() > deadline:
            sys.exit("ComfyUI did not answer on port %s: %s" % (sys.argv[1], exc))
        time.sleep(0.2)
"""


def wait_http(remote: Any, port: int, timeout: float) -> None:
    result = remote.run(
        f"python3 -c {shlex.quote(_WAIT_HTTP)} {int(port)} {timeout}", timeout=timeout + 30, check=False
    )
    if result.exit_code != 0:
        log = remote.read_log(COMFY_JOB)[0].decode("utf-8", "replace")[-800:]
        raise PistachioError(
            f"ComfyUI did not come up on the pod: {result.stderr.strip()} | log: {log.strip()}",
            f"look at `pistachio-infra logs POD --job {COMFY_JOB}`",
        )
