"""The `env` commands' engine: Pulumi's Automation API with the environment program inline.

State lives in a local `file://` backend under the tool's state dir; the passphrase comes from
PULUMI_CONFIG_PASSPHRASE(_FILE) or a generated 0600 file next to the state; the dynamic-provider process runs with
this tool's own Python (PULUMI_PYTHON_CMD). The Pulumi CLI is found on PATH, under PISTACHIO_PULUMI_ROOT, or in
scripts/build_pulumi.sh's cache; without it every `env` command stops with one line saying how to get it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from ..credentials import redact
from ..errors import MissingToolError, PistachioError
from ..settings import get_settings
from .outputs import CONFIG_NAMESPACE, PROJECT, backend_dir, default_stack, pulumi_dir, raw_outputs

LAUNCHER = "pulumi-resource-pulumi-python"
INSTALL_HINT = (
    "run `scripts/build_pulumi.sh` (builds it from its Go module into a cache this tool finds) or install it "
    "with `curl -fsSL https://get.pulumi.com | sh`"
)

Printer = Callable[[str], None]


@dataclass(frozen=True)
class EnvOptions:
    """What the `env` command line may set; None/empty leaves the stack's config as it is."""

    gpus: tuple[str, ...] = ()
    data_center: str | None = None
    volume_gb: int | None = None
    image: str | None = None
    comfyui: bool | None = None
    comfyui_gpu: str | None = None

    def config(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "gpus": json.dumps(list(self.gpus)) if self.gpus else None,
            "dataCenter": self.data_center,
            "volumeGb": self.volume_gb,
            "image": self.image,
            "comfyui": None if self.comfyui is None else str(self.comfyui).lower(),
            "comfyuiGpu": self.comfyui_gpu,
        }
        return {k: str(v) for k, v in values.items() if v is not None}


# --- finding the CLI -------------------------------------------------------------------------------------


def _build_cache_roots() -> list[Path]:
    knobs = get_settings()
    cache = knobs.pulumi_cache or (knobs.xdg_cache_home or Path.home() / ".cache") / "pistachio-infra"
    roots = [p.parent.parent for p in cache.glob("pulumi-v*/bin/pulumi") if os.access(p, os.X_OK)]

    def version_key(root: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", root.name))

    return sorted(roots, key=version_key, reverse=True)


def pulumi_root() -> Path | None:
    """The directory whose bin/ holds the CLI to use; None means `pulumi` on PATH. Raises when there is none."""
    root = get_settings().pulumi_root
    if root:
        if not (root / "bin" / "pulumi").is_file():
            raise MissingToolError(f"PISTACHIO_PULUMI_ROOT={root} has no bin/pulumi", INSTALL_HINT)
        return root
    on_path = shutil.which("pulumi")
    if on_path:
        parent = Path(on_path).resolve().parent
        return parent.parent if parent.name == "bin" else None
    roots = _build_cache_roots()
    if roots:
        return roots[0]
    raise MissingToolError("the Pulumi CLI is not installed (needed only by `env`)", INSTALL_HINT)


def pulumi_command() -> auto.PulumiCommand:
    root = pulumi_root()
    bin_dir = str(root / "bin") if root else None
    search = os.pathsep.join(p for p in (bin_dir, get_settings().path) if p)
    if not shutil.which(LAUNCHER, path=search):
        raise MissingToolError(
            f"{LAUNCHER} (the dynamic-provider plugin) is not next to the Pulumi CLI or on PATH",
            f"rerun `scripts/build_pulumi.sh`, or put a script running "
            f"`\"${{PULUMI_PYTHON_CMD:-python3}}\" -u -m pulumi.dynamic \"$@\"` named {LAUNCHER} on PATH",
        )
    try:
        return auto.PulumiCommand(root=str(root) if root else None)
    except FileNotFoundError:
        raise MissingToolError("the Pulumi CLI could not be started", INSTALL_HINT) from None
    except auto.InvalidVersionError as exc:
        raise MissingToolError(f"the Pulumi CLI is too old or unversioned: {exc}", INSTALL_HINT) from None


# --- passphrase and workspace ----------------------------------------------------------------------------


def passphrase_env(say: Printer) -> dict[str, str]:
    """Use the caller's PULUMI_CONFIG_PASSPHRASE(_FILE); else a generated one kept 0600 in the state dir."""
    if get_settings().pulumi_passphrase_given:
        return {}
    path = pulumi_dir() / "passphrase"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        say(
            f"note: PULUMI_CONFIG_PASSPHRASE is not set; generated one in {path} (mode 0600). "
            "Keep it: the stack's secrets are encrypted with it."
        )
    return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(path)}


def workspace_env(say: Printer) -> dict[str, str]:
    return {
        **passphrase_env(say),
        "PULUMI_PYTHON_CMD": sys.executable,  # the provider process imports pistachio_infra from this venv
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
    }


def select_stack(stack_name: str | None = None, say: Printer = print) -> auto.Stack:
    from ..endpoints import resolve_cloud
    from .program import env_program

    command = pulumi_command()
    # Credentials (or the sandbox) are settled here, once, so a missing key is one clear line before the engine
    # starts; the provider process then reads the same environment.
    resolve_cloud()
    backend = backend_dir()
    backend.mkdir(parents=True, exist_ok=True)
    work_dir = pulumi_dir() / "workspace"
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=str(pulumi_dir() / "home"),
        env_vars=workspace_env(say),
        secrets_provider="passphrase",
        project_settings=auto.ProjectSettings(
            name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=backend.as_uri())
        ),
        pulumi_command=command,
    )
    try:
        return auto.create_or_select_stack(
            stack_name or default_stack(), project_name=PROJECT, program=env_program, opts=opts
        )
    except auto.CommandError as exc:
        raise _engine_error("selecting the stack", exc) from None


# --- operations ------------------------------------------------------------------------------------------


def _engine_error(what: str, exc: auto.CommandError) -> PistachioError:
    if isinstance(exc, auto.ConcurrentUpdateError):
        return PistachioError(
            "another `env` command is running on this stack", "wait for it, or `pulumi cancel` if it crashed"
        )
    lines = [ln.strip() for ln in redact(str(exc)).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines or ["(no output)"]
    return PistachioError(f"env {what} failed: {errors[-1][:300]}", "see the engine output above, fix, and rerun")


def _configure(stack: auto.Stack, options: EnvOptions, pin_data_center: bool) -> None:
    values = options.config()
    if pin_data_center and "dataCenter" not in values:
        current = stack.get_all_config()
        if f"{CONFIG_NAMESPACE}:dataCenter" not in current:
            deployed = (raw_outputs(stack.name) or {}).get("data_center_id")
            values["dataCenter"] = deployed or _pick_now(values, current)
    if values:
        stack.set_all_config({f"{CONFIG_NAMESPACE}:{k}": auto.ConfigValue(v) for k, v in values.items()})


def _pick_now(values: dict[str, str], current: dict[str, auto.ConfigValue]) -> str:
    from .placement import default_gpu_names, resolve_gpu_type_ids
    from .program import choose_data_center

    raw = values.get("gpus") or (current.get(f"{CONFIG_NAMESPACE}:gpus") or auto.ConfigValue("")).value
    gpus = json.loads(raw) if raw else default_gpu_names()
    return choose_data_center(tuple(resolve_gpu_type_ids(gpus)))


def _run(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except auto.CommandError as exc:
        raise _engine_error(what, exc) from None


def preview(options: EnvOptions, stack_name: str | None = None, say: Printer = print) -> dict[str, int]:
    stack = select_stack(stack_name, say)
    _configure(stack, options, pin_data_center=False)
    result = _run("preview", lambda: stack.preview(on_output=lambda s: say(redact(s))))
    return dict(result.change_summary)


def up(options: EnvOptions, stack_name: str | None = None, say: Printer = print) -> dict[str, Any]:
    stack = select_stack(stack_name, say)
    _configure(stack, options, pin_data_center=True)
    result = _run("up", lambda: stack.up(on_output=lambda s: say(redact(s))))
    return {k: v.value for k, v in result.outputs.items()}


def refresh(stack_name: str | None = None, say: Printer = print) -> dict[str, int]:
    stack = select_stack(stack_name, say)
    result = _run("refresh", lambda: stack.refresh(on_output=lambda s: say(redact(s))))
    return dict(result.summary.resource_changes or {})


def destroy(stack_name: str | None = None, say: Printer = print) -> dict[str, int]:
    stack = select_stack(stack_name, say)
    result = _run("destroy", lambda: stack.destroy(on_output=lambda s: say(redact(s))))
    return dict(result.summary.resource_changes or {})

