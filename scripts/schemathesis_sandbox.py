"""Run schemathesis over the REST v2 operations the sandbox serves (issue 18), against a running sandbox or a
fresh one: `uv run python scripts/schemathesis_sandbox.py [schemathesis run options]`, e.g. `-n 200 --max-time 900`.

The sandbox started here has its rate limits raised so the run tests logic, not 429s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent / "pistachio_infra" / "sandbox" / "openapi-v2.json"
OPERATIONS = [
    "listPods", "createPod", "getPod", "updatePod", "deletePod", "podAction", "listNetworkVolumes",
    "createNetworkVolume", "getNetworkVolume", "updateNetworkVolume", "deleteNetworkVolume",
    "listTemplates", "createTemplate", "getTemplate", "updateTemplate", "deleteTemplate", "listGpuTypes",
    "getGpuType", "listDataCenters", "getDataCenter", "getSshKeys", "updateSshKeys", "listPodBilling",
]
ALL_CHECKS = ("not_a_server_error,response_schema_conformance,status_code_conformance,positive_data_acceptance,"
              "negative_data_rejection")


def command(info, checks: str = ALL_CHECKS) -> list[str]:
    """The `schemathesis run` command line for the sandbox `info` (a control.SandboxInfo)."""
    included = [arg for op in OPERATIONS for arg in ("--include-operation-id", op)]
    return [str(Path(sys.executable).parent / "schemathesis"), "run", str(SPEC), "-u", info.graphql_base,
            "-H", f"Authorization: Bearer {info.api_key}", "--checks", checks, *included]


def main(argv: list[str]) -> int:
    from pistachio_infra.sandbox import control

    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "scenario.toml"
        scenario.write_text("[rate_limit]\nper_minute = 1000000\nper_hour = 1000000\nper_day = 1000000\n")
        home = Path(tmp) / "sandbox"
        info = control.start(home, scenario)
        try:
            return subprocess.run([*command(info), *argv]).returncode
        finally:
            control.stop(home)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
