"""Issue 15 item 2: logs outlive the pod. Bootstrap, caption and training logs are copied into
runs/<job>/<stamp>/logs/ before teardown and after a failure; a failure's one line ends with the log file that
explains it; `pistachio-infra logs JOB` reads them after the pod is gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import cli, write_project


@pytest.mark.timeout(600)
def test_a_failed_and_a_finished_run_keep_their_logs_after_the_pod_is_gone(sandbox_factory, tmp_path):
    sandbox_factory({"standin": {"captioner": {"fail_images": ["pip_0[0-3].*"]}}})
    project = write_project(tmp_path / "proj")
    failed = cli("train", "pip", "--project", str(project))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("error: JoyCaption could not caption 4 of 8"), line
    log = Path(re.search(r"log: (\S+\.log)$", line).group(1))
    assert log.is_file() and log.parent.name == "logs" and log.stem.startswith("caption"), line
    assert log.parent.parent.parent.name == "pip" and log.parent.parent.parent.parent.name == "runs"
    kept = {p.stem for p in log.parent.glob("*.log")}
    assert "bootstrap" in kept, kept

    after = cli("logs", "pip")  # the pod is gone: the kept logs, each under its path
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"==> {log} <==" in after.stdout and log.read_text() in after.stdout

    for n in range(4):  # as the fix says: captions for the images JoyCaption failed on
        (tmp_path / "proj" / "images" / f"pip_0{n}.txt").write_text("pip7, a small green cartoon character")
    done = cli("train", "pip", "--project", str(project))
    assert done.returncode == 0, done.stdout + done.stderr
    report = Path(re.search(r"report\s+(\S+report\.md)", done.stdout).group(1))
    train_log = report.parent / "logs" / "train.log"
    assert train_log.is_file() and train_log.stat().st_size > 0
    shown = cli("logs", "pip", "--job", "train")
    assert shown.returncode == 0 and shown.stdout == train_log.read_text()
    missing = cli("logs", "no-such-job")
    assert missing.returncode == 3 and "no pod or job called 'no-such-job'" in missing.stderr
