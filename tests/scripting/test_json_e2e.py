"""Issue 15 item 3: scriptable. `--json` documents validate against the schemas in tests/data/schemas/; piped
output never wraps or truncates; NO_COLOR is honoured on a terminal, errors included; exit codes tell a usage
error (2) from bad configuration (3) from an interruption (130)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pexpect
import pytest
from helpers import CLI, confirmed, default_sigint, live_pods

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *confirmed(args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def document(schema: str | dict, *args: str, codes: tuple[int, ...] = (0,)) -> dict:
    done = run(*args)
    assert done.returncode in codes, done.stdout + done.stderr
    doc = json.loads(done.stdout)  # the whole of stdout is one document
    body = schema if isinstance(schema, dict) else json.loads((SCHEMAS / f"{schema}.json").read_text())
    jsonschema.validate(doc, body, format_checker=jsonschema.FormatChecker())
    return doc


def _campaign(root: Path) -> Path:
    import tomlkit

    from pistachio_infra.dataset.demo import generate_dataset

    generate_dataset(root / "data" / "a", 6, seed=1)
    doc = {"campaign": {"name": "json-camp", "budget_usd": 5.0, "gpu": ["a40", "a6000"], "max_concurrent": 1},
           "project": {"name": "camp", "comfyui_loras_dir": "loras"},
           "jobs": {"a": {"character": "A", "trigger": "chra1", "dataset": "data/a", "epochs": 4, "checkpoints": 2}}}
    (root / "campaign.toml").write_text(tomlkit.dumps(doc))
    return root / "campaign.toml"


def test_json_documents_validate_against_their_schemas(sandbox, sandbox_admin, tmp_path):
    from selection.selection_runs import u_curve, write_run

    empty = document("status", "status", "--json")
    assert empty["pods"] == [] and empty["cloud"] == "sandbox"
    assert "no pods (sandbox)" in run("status").stdout  # and the table says so in words

    up = run("up", "--gpu", "a6000", "--no-models", "--no-bootstrap", "--max-hours", "1", "--label", "json")
    assert up.returncode == 0, up.stdout + up.stderr
    status = document("status", "status", "--json")
    (pod,) = status["pods"]
    assert pod["name"].startswith("pistachio-up-json-") and pod["status"] == "RUNNING" and pod["usd_per_hr"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", pod["watchdog_deadline"])  # date + zone

    gpus = document("gpus", "gpus", "--json")
    assert {"a6000", "h200"} <= {c["class"] for c in gpus["classes"]}
    document("doctor", "doctor", "--json", codes=(0, 3))
    run_dir = write_run(tmp_path / "run", u_curve)
    chosen = document("select", "select", str(run_dir), "--json")
    assert chosen["checkpoint_dir"].endswith(f"step{chosen['step']}") and Path(chosen["plot"]).is_file()
    from pistachio_infra.campaign.planning import PLAN_SCHEMA  # the planner's own (issue 21)

    document(PLAN_SCHEMA, "campaign", "plan", str(_campaign(tmp_path)), "--json")
    document("campaign-status", "campaign", "status", "--json")

    assert run("down", pod["name"]).returncode == 0
    assert live_pods(sandbox_admin) == []
    cost = document("cost", "cost", "--json", "--offline")
    assert cost["total"]["pods"] == sum(j["pods"] for j in cost["jobs"])  # `up` pods belong to no job


def test_piped_output_keeps_every_row_whole():
    done = run("gpus", env={"COLUMNS": "40"})  # a narrow terminal setting does not squeeze piped output
    assert done.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    assert "NVIDIA RTX A6000" in rows["a6000"] and re.search(r"\$\d+\.\d\d/h", rows["a6000"]), done.stdout
    assert "\x1b[" not in done.stdout


@pytest.mark.parametrize("no_color", [False, True])
def test_errors_on_a_terminal_are_red_unless_no_color(tmp_path, no_color):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update({"COLUMNS": "200", **({"NO_COLOR": "1"} if no_color else {})})
    child = pexpect.spawn(CLI, ["train", "nosuchjob"], cwd=str(tmp_path), env=env,
                          encoding="utf-8", preexec_fn=default_sigint, timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3  # bad configuration
    assert ("\x1b[31m" in child.before) is not no_color, repr(child.before)


def test_exit_codes_usage_config_interrupted(sandbox, sandbox_admin, tmp_path):
    assert run("train").returncode == 2  # usage: JOB is missing
    assert run("train", str(tmp_path / "nothing-here")).returncode == 3  # bad configuration
    child = pexpect.spawn(CLI, ["up", "--gpu", "a6000", "--no-models"], env={**os.environ, "COLUMNS": "200"},
                          encoding="utf-8", preexec_fn=default_sigint, timeout=120)
    child.expect(r"Rent it\? \[y/N\]")
    child.sendintr()  # Ctrl-C at the question
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and sandbox_admin.pods() == []
