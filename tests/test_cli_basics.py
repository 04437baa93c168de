import subprocess
import sys

from click.testing import CliRunner

from pistachio_infra import __version__
from pistachio_infra.cli import COMMANDS, SUMMARY_LIMIT, cli, summary

HEAVY = ("runpod", "pulumi", "wandb", "fabric", "huggingface_hub", "rich.progress", "paramiko")


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from pistachio_infra.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "HEAVY="


def test_every_command_module_loads():
    for name in COMMANDS:
        assert cli.get_command(None, name) is not None, name


def _all_commands(command, path=()):
    import click

    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _all_commands(sub, (*path, name))


def test_sandbox_flag_is_accepted_after_every_command_name():
    for name in COMMANDS:
        for path, command in _all_commands(cli.get_command(None, name), (name,)):
            assert any("--sandbox" in p.opts for p in command.params), " ".join(path)


def test_sandbox_flag_after_the_command_name_chooses_the_sandbox(tmp_path):
    env = {"PISTACHIO_HOME": str(tmp_path), "PISTACHIO_SANDBOX": ""}  # restored by CliRunner afterwards
    before = CliRunner().invoke(cli, ["doctor"], env=env)
    after = CliRunner().invoke(cli, ["doctor", "--sandbox"], env=env)
    global_flag = CliRunner().invoke(cli, ["--sandbox", "doctor"], env=env)
    assert "pistachio-infra doctor (RunPod)" in before.output
    assert "pistachio-infra doctor (sandbox)" in after.output
    assert "pistachio-infra doctor (sandbox)" in global_flag.output


def test_the_help_list_is_the_commands_own_docstring_read_without_importing_it():
    for name, entry in COMMANDS.items():
        expected = cli.get_command(None, name).get_short_help_str(SUMMARY_LIMIT)
        assert expected and summary(*entry) == expected, name


def test_the_cloud_is_resolved_once_per_invocation_and_named(monkeypatch):
    import click

    from pistachio_infra.endpoints import CloudChoice, resolve_cloud

    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_TESTKEY_123456")
    monkeypatch.delenv("PISTACHIO_SANDBOX", raising=False)
    with click.Context(cli, obj=CloudChoice(sandbox=False)):
        first = resolve_cloud()
        assert resolve_cloud() is first
        assert (first.name, first.label) == ("runpod", "RunPod")
    assert resolve_cloud() is not first  # outside an invocation: resolved on every call
