"""`init` (pistachio.toml + pod SSH key) and `doctor` (what is missing, and how to fix it)."""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import click


@click.command()
@click.option(
    "--path", "toml_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("pistachio.toml"),
    show_default=True, help="Where to write the project file.",
)
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing pistachio.toml.")
def init(toml_path: Path, name: str | None, force: bool) -> None:
    """Write a commented pistachio.toml and create the pod SSH key (ed25519, 0600)."""
    from ..config.render import render_template
    from ..paths import ssh_key_path
    from ..pods.sshkeys import ensure_key_pair

    if toml_path.exists() and not force:
        click.echo(f"kept {toml_path} (exists; --force overwrites it)")
    else:
        project = name or re.sub(r"[^A-Za-z0-9_-]+", "-", toml_path.resolve().parent.name).strip("-") or "loras"
        toml_path.parent.mkdir(parents=True, exist_ok=True)
        toml_path.write_text(render_template("pistachio.toml.j2", name=project))
        click.echo(f"wrote {toml_path}")

    key = ssh_key_path()
    existed = key.exists()
    ensure_key_pair(key)
    click.echo(f"{'kept' if existed else 'created'} SSH key {key} (public key: {key}.pub)")
    click.echo("next: `pistachio-infra doctor`, then put images in the job's dataset folder")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    required: bool
    detail: str  # what was found (never a secret's value)
    fix: str = ""
    source: str = ""  # credentials: where the value came from (environment, credentials file, an existing login)


def _which(program: str, *extra_dirs: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for folder in extra_dirs:
        candidate = Path(folder) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _secret_check(name: str, required: bool) -> Check:
    from ..credentials import HOW_TO_GET, find_secret
    from ..errors import CredentialsError

    try:
        value, source = find_secret(name)
    except CredentialsError as exc:
        return Check(name, False, required, exc.cause, exc.fix or "")
    if value:
        return Check(name, True, required, f"set ({source})", source=source)
    return Check(name, False, required, "not set", HOW_TO_GET.get(name, f"export {name}=..."))


def _key_check() -> Check:
    from ..paths import ssh_key_path

    key = ssh_key_path()
    if not key.exists():
        return Check("SSH key", False, True, f"{key} missing", "run `pistachio-infra init`")
    mode = stat.S_IMODE(key.stat().st_mode)
    if mode & 0o077:
        return Check("SSH key", False, True, f"{key} has mode {mode:o}", f"run `chmod 600 {key}`")
    if not key.with_name(key.name + ".pub").exists():
        return Check("SSH key", False, True, f"{key}.pub missing", "run `pistachio-infra init` to restore it")
    return Check("SSH key", True, True, str(key))


def _tool_check(program: str, required: bool, why: str, fix: str, *extra_dirs: str) -> Check:
    path = _which(program, *extra_dirs)
    return Check(program, path is not None, required, path or f"not found ({why})", "" if path else fix)


def run_checks(sandbox: bool) -> list[Check]:
    apt = "sudo apt-get install -y"
    return [
        _secret_check("RUNPOD_API_KEY", required=not sandbox),
        _secret_check("HF_TOKEN", required=False),
        _secret_check("WANDB_API_KEY", required=False),
        _key_check(),
        _tool_check("ssh", False, "for `pistachio-infra ssh`", f"{apt} openssh-client"),
        _tool_check(
            "sshd", sandbox, "the sandbox's pods are local sshd servers", f"{apt} openssh-server",
            "/usr/sbin", "/usr/local/sbin",
        ),
        _pulumi_check(),
    ]


def _pulumi_check() -> Check:
    """The Pulumi CLI where `env` finds it: PISTACHIO_PULUMI_ROOT, PATH, or scripts/build_pulumi.sh's cache."""
    from ..errors import MissingToolError
    from ..stacks.automation import pulumi_root

    try:
        root = pulumi_root()
    except MissingToolError as exc:
        return Check("pulumi", False, False, "not found (only for `pistachio-infra env`)", exc.fix or "")
    found = str(root / "bin" / "pulumi") if root else shutil.which("pulumi")
    return Check("pulumi", True, False, found or "on PATH")


@click.command()
@click.option("--live", is_flag=True,
              help="Also ask the cloud, for $0 and renting nothing: key, GPU classes, data centers, prices and "
                   "stock, the environment's template and volume.")
@click.option("--project", "project_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="pistachio.toml whose jobs' data centers --live checks (default: ./pistachio.toml).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (nothing else on stdout).")
def doctor(live: bool, project_path: Path | None, as_json: bool) -> None:
    """Check credentials, SSH key and tools; say how to fix what is missing. Never prints a secret."""
    from ..console import make_console
    from ..endpoints import cloud_choice
    from ..errors import EXIT_CONFIG

    choice = cloud_choice()
    checks = run_checks(choice.sandbox)
    if live and (choice.sandbox or all(c.ok for c in checks if c.name == "RUNPOD_API_KEY")):
        from ..endpoints import resolve_cloud
        from .doctor_live import live_checks

        checks += live_checks(resolve_cloud(), project_path)
    missing = [c.name for c in checks if c.required and not c.ok]
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps({"cloud": choice.name, "ready": not missing,
                               "checks": [dataclasses.asdict(c) for c in checks]}, indent=2))
        if missing:
            raise SystemExit(EXIT_CONFIG)
        return
    console = make_console()
    console.print(f"pistachio-infra doctor ({choice.label})")
    width = max(len(c.name) for c in checks)
    for c in checks:
        status = "[green]ok      [/]" if c.ok else ("[red]missing [/]" if c.required else "[yellow]optional[/]")
        line = f"{status} {c.name:<{width}}  {c.detail}"
        console.print(line + (f" — {c.fix}" if c.fix else ""), soft_wrap=True)
    if missing:
        console.print(f"[red]required and missing:[/] {', '.join(missing)}")
        raise SystemExit(EXIT_CONFIG)
    console.print("[green]ready[/]" + (" (live checks passed; nothing was rented)" if live else ""))
