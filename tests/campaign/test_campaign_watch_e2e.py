"""Issue 15 item 5: on a terminal `campaign run` shows a live table (job, stage, step/total, loss, $ against the
allowance), and afterwards each job's warnings (from its log) instead of hiding them."""

from __future__ import annotations

import os

import pexpect
import pytest
from helpers import CLI, default_sigint, live_pods

from .conftest import write_campaign


@pytest.mark.timeout(600)
def test_campaign_run_on_a_terminal_shows_a_live_table_and_the_jobs_warnings(sandbox, sandbox_admin, tmp_path):
    camp = write_campaign(tmp_path, jobs=1, budget=2.0)
    child = pexpect.spawn(CLI, ["--sandbox", "campaign", "run", str(camp), "--yes"],
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}, encoding="utf-8",
                          preexec_fn=default_sigint, timeout=540)
    child.expect(r"campaign test-camp")  # the live table's title
    child.expect(r"\$ / allowance")
    child.expect(pexpect.EOF)
    out = child.before
    child.close()
    assert child.exitstatus == 0, out
    assert "char0: warning: only 6 images" in out  # the dataset warning the job's log holds
    assert live_pods(sandbox_admin) == []
