"""A property-based run of RunPod's REST v2 OpenAPI document (pistachio_infra/sandbox/openapi-v2.json) against the
sandbox, with schemathesis, over the 23 operations the sandbox serves (issue 18).

Bounded so CI stays fast: a few examples per operation and a time budget (`--max-time`), one worker, fixed seed.
Checks: no server errors, responses conform to their schemas, status codes are ones the spec lists, and requests
that violate the schema are rejected. `positive_data_acceptance` is left out here because the spec itself moves
several rules to the handler ("exactly one of gpu or cpu", at most one mount kind, a volume only grows, a network
volume pins the pod's data center…): schema-valid bodies that break them are 400s on RunPod too. A bigger run by
hand: `uv run python scripts/schemathesis_sandbox.py -n 200 --max-time 900` (see that script).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "schemathesis_sandbox.py"
_spec = importlib.util.spec_from_file_location("schemathesis_sandbox", _SCRIPT)
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def test_sandbox_conforms_to_the_rest_v2_spec(sandbox_factory, tmp_path):
    info = sandbox_factory({"rate_limit": {"per_minute": 1_000_000, "per_hour": 1_000_000, "per_day": 1_000_000}})
    cmd = runner.command(info, checks="not_a_server_error,response_schema_conformance,status_code_conformance,"
                               "negative_data_rejection")
    result = subprocess.run([*cmd, "-n", "3", "--max-time", "60", "-w", "1", "--seed", "18",
                             "--phases", "examples,coverage,fuzzing", "--no-color"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
