"""Running commands: output, environment, working directory, failures that say what happened without secrets."""

from __future__ import annotations

import pytest

from pistachio_infra.remote import RemoteCommandError


def test_run_returns_output_and_passes_env_and_cwd(remote, pod):
    result = remote.run('printf "%s|" "$GREETING" "$(pwd)"; echo warn >&2', env={"GREETING": "it's a 'quoted' $value"},
                        cwd=pod.workspace)  # fmt: skip
    assert result.stdout == f"it's a 'quoted' $value|{pod.workspace}|"
    assert result.stderr == "warn\n"
    assert result.exit_code == 0 and result.ok


def test_workspace_comes_from_the_pod(remote, pod):
    assert remote.workspace == pod.workspace == remote.run("printenv PISTACHIO_WORKSPACE").stdout.strip()
    assert remote.jobs_dir == f"{pod.workspace}/.pistachio/jobs"


def test_check_false_returns_the_exit_code(remote):
    result = remote.run("echo out; exit 5", check=False)
    assert result.exit_code == 5 and result.stdout == "out\n"


def test_failure_names_command_exit_code_and_stderr_tail(remote):
    script = "for i in $(seq 1 40); do echo noise $i >&2; done; echo 'fatal: disk full' >&2; exit 3"
    with pytest.raises(RemoteCommandError) as err:
        remote.run(script)
    e = err.value
    assert e.exit_code == 3
    message = str(e)
    assert "exited with 3" in message and "pod-a" in message and "seq 1 40" in message
    assert "fatal: disk full" in message
    assert "noise 1 " not in message + " " and "noise 40" in message  # a tail, not the whole stderr
    assert "\n" not in e.cause  # one line for the CLI


def test_failure_message_has_no_secret(remote, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_sekrit_token_123456")
    with pytest.raises(RemoteCommandError) as err:
        remote.run(
            "echo \"auth with $WANDB_API_KEY\" >&2; echo 'curl -H hf_sekrit_token_123456' >&2; exit 4",
            env={"WANDB_API_KEY": "wandb-sekrit-abcdef"},
        )
    message = str(err.value) + err.value.stdout + err.value.stderr_tail + err.value.command
    assert "wandb-sekrit-abcdef" not in message and "hf_sekrit_token_123456" not in message
    assert "auth with ***" in message and "curl -H ***" in message


def test_timeout_is_a_command_error(remote):
    with pytest.raises(RemoteCommandError, match=r"timed out after 0\.5s") as err:
        remote.run("sleep 5", timeout=0.5)
    assert err.value.exit_code is None
    assert remote.run("echo still usable").stdout == "still usable\n"


def test_bad_cwd_fails_clearly(remote):
    with pytest.raises(RemoteCommandError, match="exited with 1"):
        remote.run("true", cwd="/no/such/dir")
