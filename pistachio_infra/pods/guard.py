"""A guard from the pod's first second: the watchdog started by the pod itself, through the create call's start
command (RunPod REST v2 `args` / GraphQL `dockerArgs`, the container's CMD), beside the image's own start script.

Until a client attaches (installs the full watchdog, which replaces the guard, and keeps a heartbeat) it enforces
a short "nobody came" limit: no heartbeat, no job, nobody logged in for `nobody_came_s` → the pod terminates
itself with its pod-scoped key. The max runtime holds from the start. So a client killed between create and SSH
(minutes on RunPod while the image pulls) costs minutes, not a pod billing until someone notices.

The start command runs the guard detached, then `exec`s the image's default start (RunPod's images end with
`CMD ["/start.sh"]`, runpod/containers official-templates/base/Dockerfile; the sandbox announces its own as
$PISTACHIO_START_SH), so sshd and everything else start as without it.
"""

from __future__ import annotations

import base64
import shlex
from pathlib import PurePosixPath

from ..settings import get_settings
from .watchdog import PodFiles, WatchdogPolicy, render_watchdog

WORKSPACE = PurePosixPath("/workspace")


def nobody_came_s() -> float:
    return get_settings().watchdog.nobody_came_s  # tests use seconds


def guard_script(policy: WatchdogPolicy, *, rest_url: str, limit_s: float) -> str:
    """The watchdog with the "nobody came" idle limit; pod id and workspace come from the pod's environment."""
    files = PodFiles(WORKSPACE)
    guard = WatchdogPolicy(max_runtime_s=policy.max_runtime_s, idle_s=max(limit_s, policy.heartbeat_s + 1),
                           harvest_grace_s=policy.harvest_grace_s, poll_s=min(policy.poll_s, limit_s),
                           heartbeat_s=policy.heartbeat_s, retry_s=policy.retry_s)
    return render_watchdog(guard, pod_id="", rest_url=rest_url, files=files, remaining_s=policy.max_runtime_s,
                           jobs_dir=WORKSPACE / ".pistachio" / "jobs", guard=True)


def start_command(policy: WatchdogPolicy, *, rest_url: str, limit_s: float | None = None) -> str:
    """The pod's start command: write and start the guard (detached), then exec the image's default start."""
    script = base64.b64encode(guard_script(policy, rest_url=rest_url,
                                           limit_s=nobody_came_s() if limit_s is None else limit_s).encode())
    shell = (
        'W="${PISTACHIO_WORKSPACE:-/workspace}"/.pistachio; mkdir -p "$W" && cd "$W" && '
        f'echo {script.decode()} | base64 -d > watchdog.py && '
        '{ setsid nohup python3 watchdog.py </dev/null >>watchdog.log 2>&1 & } ; '
        'exec "${PISTACHIO_START_SH:-/start.sh}"'
    )
    return shlex.join(["bash", "-c", shell])
