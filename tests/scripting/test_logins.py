"""Issue 15 item 4: existing logins. With nothing in the environment, the RunPod key comes from runpodctl's
config (~/.runpod/config.toml, `apikey`: runpod/runpodctl cmd/root.go initConfig and cmd/config/config.go @
001f6b9fc3e580a6d38ac2fca6dba6b4e2cf9044), the HF token from huggingface_hub's store (`hf auth login` writes
$HF_HOME/token; huggingface_hub.get_token reads it), the wandb key from netrc (`wandb login`: machine api.wandb.ai);
`doctor` names each source and never a value, and finds the Pulumi CLI where `env` finds it (build cache)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers import CLI

SECRETS = {"RUNPOD_API_KEY": "rpa_FROMRUNPODCTL_0123456789", "HF_TOKEN": "hf_FROMHFSTORE_0123456789abcdef",
           "WANDB_API_KEY": "0123456789abcdef0123456789abcdef0123wand"}


def test_doctor_finds_existing_logins_and_names_their_source(tmp_path: Path):
    home = tmp_path / "home"
    (home / ".runpod").mkdir(parents=True)
    (home / ".runpod" / "config.toml").write_text(
        f'apikey = "{SECRETS["RUNPOD_API_KEY"]}"\napiurl = "https://api.runpod.io/graphql"\n')
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text(SECRETS["HF_TOKEN"])
    netrc = home / ".netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {SECRETS['WANDB_API_KEY']}\n")
    netrc.chmod(0o600)
    pulumi = tmp_path / "cache" / "pistachio-infra" / "pulumi-v3.200.0" / "bin" / "pulumi"
    pulumi.parent.mkdir(parents=True)
    pulumi.write_text("#!/bin/sh\necho v3.200.0\n")
    pulumi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "PISTACHIO_SANDBOX", "NETRC", "HF_HOME")}
    env.update({"HOME": str(home), "HF_HOME": str(tmp_path / "hf"), "PISTACHIO_HOME": str(tmp_path / "state"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": str(Path(CLI).parent) + ":/usr/bin:/bin"})
    done = subprocess.run([CLI, "doctor", "--json"], capture_output=True, text=True, env=env, timeout=120)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["RUNPOD_API_KEY"]["source"] == "runpodctl config (~/.runpod/config.toml)"
    assert checks["HF_TOKEN"]["source"] == "huggingface_hub login (hf auth login)"
    assert checks["WANDB_API_KEY"]["source"] == "netrc (wandb login)"
    assert checks["pulumi"]["ok"] and checks["pulumi"]["detail"] == str(pulumi)
    assert "rsync" not in checks
    text = subprocess.run([CLI, "doctor"], capture_output=True, text=True, env=env, timeout=120)
    for value in SECRETS.values():
        assert value not in done.stdout + done.stderr + text.stdout + text.stderr
    assert "set (runpodctl config (~/.runpod/config.toml))" in text.stdout

    env["RUNPOD_API_KEY"] = "rpa_FROMENV_0123456789"  # the environment wins
    first = subprocess.run([CLI, "doctor", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert {c["name"]: c for c in json.loads(first.stdout)["checks"]}["RUNPOD_API_KEY"]["source"] == "environment"


def test_shell_completion_offers_job_and_pod_names(tmp_path: Path, monkeypatch):
    from pistachio_infra.state import Store

    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    store = Store()
    store.create_job("pip", cloud="sandbox", spec={}, project=str(tmp_path))
    store.close()
    env = dict(os.environ)

    def complete(words: str) -> list[str]:
        done = subprocess.run([CLI], capture_output=True, text=True, timeout=60,
                              env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1),
                                   "_PISTACHIO_INFRA_COMPLETE": "bash_complete"})
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("pistachio-infra logs p") == ["pip"]
    assert complete("pistachio-infra lo") == ["logs", "lock"]
