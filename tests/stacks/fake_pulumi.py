"""A stand-in `pulumi` executable: records each invocation (argv + the env the tool passes) and answers like the CLI.

Installed as <root>/bin/pulumi by the tests (with this venv's python in the shebang); log path in FAKE_PULUMI_LOG.
"""

import json
import os
import sys

ENV_KEYS = ("PULUMI_PYTHON_CMD", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_HOME",
            "PULUMI_SKIP_UPDATE_CHECK", "PATH")
args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "cwd": os.getcwd(), "env": {k: os.environ.get(k) for k in ENV_KEYS}}) + "\n")

words = [a for a in args if not a.startswith("-")]
HISTORY = [{"kind": "update", "startTime": "2026-11-27T10:00:00.000Z", "endTime": "2026-11-27T10:00:05.000Z",
            "message": "", "environment": {}, "config": {}, "result": "succeeded", "version": 1,
            "resourceChanges": {"create": 3}}]
if words[:1] == ["version"]:
    print("v3.274.1")
elif words[:2] == ["stack", "output"]:
    print(json.dumps({"volume_id": "vol-1", "data_center_id": "EU-RO-1"}))
elif words[:2] == ["stack", "history"]:
    print(json.dumps(HISTORY))
elif words[:2] == ["config", "--json"] or (words[:1] == ["config"] and "--json" in args and len(words) == 1):
    print("{}")
elif words[:1] == ["whoami"]:
    print(json.dumps({"user": "fake", "url": "file://", "organizations": []}))
elif os.environ.get("FAKE_PULUMI_FAIL") and words[:1] == [os.environ["FAKE_PULUMI_FAIL"]]:
    print("error: the engine says no", file=sys.stderr)
    sys.exit(255)
