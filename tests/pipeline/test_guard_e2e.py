"""Issue 14 item 1: a guard from the pod's first second. The pod starts its own watchdog through the create call's
start command (REST v2 `args` / GraphQL `dockerArgs`, the container CMD; the image's default start still runs after
it: runpod/containers official-templates/base/Dockerfile `CMD ["/start.sh"]`), so a client SIGKILLed between
create and SSH leaves a pod that terminates itself within its "nobody came" limit, with no rerun."""

from __future__ import annotations

import pytest
from helpers import live_pods, wait_until

from .conftest import kill, start_cli, write_project

pytestmark = pytest.mark.slow


def test_client_killed_between_create_and_ssh_leaves_no_pod(sandbox_factory, tmp_path, state):
    from pistachio_infra.sandbox.control import Admin

    # pods stay STARTING (not SSH-ready) for 60 s: the client cannot have installed its watchdog when it is killed
    admin = Admin(sandbox_factory({"timing": {"start_s": 60.0}}))
    project = write_project(tmp_path / "proj")
    proc = start_cli("train", "pip", "--project", str(project), env={"PISTACHIO_WATCHDOG_NOBODY_CAME_S": "3"})
    wait_until(lambda: admin.pods(), 120, "the pod to be created", proc)
    kill(proc)
    assert len(admin.pods()) == 1
    # no rerun, no reap: the pod's own guard ends it (event: the sandbox records it TERMINATED)
    wait_until(lambda: not live_pods(admin), 180, "the pod's guard to terminate it")  # only the guard can
    assert state.events("train_launch") == []
