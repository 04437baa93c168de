"""Pods and pistachio.lock: read a bootstrapped pod into a lock, bootstrap a pod from a lock exactly, check a pod
against a lock, and summarise the environment a job ran in.

    lock = new_lock(cloud, models, freeze=...)                  # `lock`
    lock = upgraded_lock(cloud, old, upgrade_parts(old, "models"), freeze=...)   # `lock --upgrade models`
    report = bootstrap_from_lock(remote, cloud, lock)            # `rebuild`: pinned commits, frozen pip set,
                                                                 # model files by revision, sha256-verified
    report = check_pod(remote, lock, pod_image=...)              # `lock --check POD`
    summary = current_lock_summary(remote, cloud, models=...)     # what the pipeline records per job
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..catalog import RepoPin, WheelPin
from ..endpoints import Cloud
from ..errors import ConfigError, PistachioError
from .drift import DriftReport, compare, file_key, observe
from .lockfile import (
    Lock,
    RepoLock,
    cloud_name,
    current_image,
    current_tool,
    frozen_requirements,
    load_lock,
    pinned_repos,
    pinned_wheels,
    python_envs,
    repo_head,
    resolve_gpu_classes,
    resolve_models,
)

MODELS_JOB = "rebuild-models"
FIXED_PARTS = ("tool", "image", "python", "gpu-classes")

Freeze = Callable[[Lock], Lock]  # a lock with repos pinned -> the same with python (+ submodules) from a pod


class RebuildError(PistachioError):
    pass


class ModelHashMismatchError(RebuildError):
    """A model file's bytes do not match the sha256 the lock pins."""


def check_cloud(lock: Lock, cloud: Cloud, source: str = "pistachio.lock") -> None:
    if lock.cloud != cloud_name(cloud):
        raise ConfigError(
            f"{source} was written against {lock.cloud}, this command talks to {cloud_name(cloud)}",
            "use --sandbox for a sandbox lock, or write a lock for this cloud (`pistachio-infra lock --out FILE`)",
        )


def lock_cloud(cloud: Cloud, lock: Lock) -> Cloud:
    """`cloud` with every repo pinned at the lock's commit and every wheel at the lock's sha256 (served where the
    cloud serves it, else from the lock's URL)."""
    overrides = dict(cloud.repo_overrides)
    for name, repo in lock.repos.items():
        served = cloud.repo_overrides.get(name)
        overrides[name] = RepoPin(url=served.url if served else repo.url, commit=repo.commit)
    wheels = dict(cloud.wheel_overrides)
    for name, wheel in lock.wheels.items():
        served_wheel = cloud.wheel_overrides.get(name)
        wheels[name] = WheelPin(url=served_wheel.url if served_wheel else wheel.url, sha256=wheel.sha256)
    return dataclasses.replace(cloud, repo_overrides=overrides, wheel_overrides=wheels)


# --- creating and upgrading ---------------------------------------------------------------------------------------


def new_lock(cloud: Cloud, models: Sequence[str], freeze: Freeze) -> Lock:
    """A lock of what the tool pins today: its repo commits, its image, the models' current revisions (resolved to
    commit shas), the GPU classes' profiles and configs, and the package set of a pod bootstrapped that way."""
    lock = Lock(
        cloud=cloud_name(cloud),
        tool=current_tool(),
        image=current_image(),
        repos=pinned_repos(cloud),
        wheels=pinned_wheels(cloud),
        python=python_envs(),
        models=resolve_models(cloud, models),
        gpu_classes=resolve_gpu_classes(),
    )
    return freeze(lock)


def upgrade_choices(lock: Lock) -> list[str]:
    return ["all", "tool", "image", *lock.repos, "python", "models", *lock.models, "gpu-classes"]


def upgrade_parts(lock: Lock, component: str) -> set[str]:
    """What `--upgrade COMPONENT` re-resolves. A repo brings its Python packages along (requirements change)."""
    if component == "all":
        return {*FIXED_PARTS, *lock.repos, *lock.models}
    if component == "models":
        return set(lock.models)
    if component == "profiles":
        return {"gpu-classes"}
    if component in lock.repos:
        return {component, "python"}
    if component in FIXED_PARTS or component in lock.models:
        return {component}
    raise ConfigError(f"unknown lock component {component!r}", f"use one of: {', '.join(upgrade_choices(lock))}")


def upgraded_lock(cloud: Cloud, old: Lock, parts: set[str], freeze: Freeze) -> Lock:
    """`old` with `parts` resolved again: repos to their default branch's newest commit, models to the revision
    data/models.toml names (usually "main") as it is now, the rest to what this pistachio-infra pins."""
    new = old.model_copy(deep=True)
    if "tool" in parts:
        new.tool = current_tool()
    if "image" in parts:
        new.image = current_image()
        new.wheels = pinned_wheels(cloud)  # built for the image: they change with it
    for name, repo in old.repos.items():
        if name in parts:
            served = cloud.repo_overrides.get(name)
            url = served.url if served else repo.url
            new.repos[name] = RepoLock(url=url, commit=repo_head(url))
    models = [m for m in old.models if m in parts]
    if models:
        new.models.update(resolve_models(cloud, models))
    if "gpu-classes" in parts:
        new.gpu_classes = resolve_gpu_classes()
    if "python" in parts:
        new.python = python_envs()
        new = freeze(new)
    return new


def freeze_from(remote: Any, lock: Lock) -> Lock:
    """The lock with the pod's Python package sets and submodule commits; its repos must be at the lock's commits."""
    observed = observe(remote, lock.model_copy(update={"models": {}}))
    new = lock.model_copy(deep=True)
    for name, repo in lock.repos.items():
        seen = observed["repos"].get(name) or {}
        if seen.get("head") != repo.commit or seen.get("dirty"):
            found = (seen.get("head") or "no checkout") + (" (modified)" if seen.get("dirty") else "")
            raise RebuildError(
                f"pod {getattr(remote, 'pod_id', '?')} has {name} at {found}, the lock pins {repo.commit}",
                "read packages from a pod bootstrapped at the lock's commits (or omit --from-pod to rent one)",
            )
        new.repos[name] = repo.model_copy(
            update={"submodules": {p: s for p, s in (seen.get("submodules") or {}).items() if s}}
        )
    for env_name, env in lock.python.items():
        seen = observed["python"].get(env_name) or {}
        if not seen.get("present") or "packages" not in seen:
            raise RebuildError(f"pod {getattr(remote, 'pod_id', '?')} has no working {env.interpreter}",
                               "bootstrap the pod first (`pistachio-infra up`)")
        new.python[env_name] = env.model_copy(
            update={"python_version": seen.get("version", ""), "packages": dict(sorted(seen["packages"].items()))}
        )
    return new


def bootstrap_for_lock(remote: Any, cloud: Cloud, lock: Lock, **kwargs: Any) -> None:
    """A normal bootstrap (requirements.txt, no model files) at the lock's repo commits: what `lock` freezes."""
    from ..pods.bootstrap import bootstrap

    bootstrap(remote, lock_cloud(cloud, lock), models=(), **kwargs)


# --- rebuilding -------------------------------------------------------------------------------------------------


def bootstrap_from_lock(
    remote: Any,
    cloud: Cloud,
    lock: Lock,
    *,
    store: Any = None,
    job_id: int | None = None,
    pod_name: str | None = None,
    pod_image: str | None = None,
    on_output: Callable[[str], None] | None = None,
) -> DriftReport:
    """Make the pod exactly what `lock` says and prove it: repos at the pinned commits (+ submodules), the frozen
    package sets installed instead of requirements.txt, every model file fetched at its pinned revision and checked
    against its pinned sha256. A file with other bytes is deleted and stops the rebuild (ModelHashMismatchError);
    any other difference left afterwards raises RebuildError. Returns the (clean) drift report."""
    from ..pods.bootstrap import bootstrap

    check_cloud(lock, cloud)
    bootstrap(remote, lock_cloud(cloud, lock), models=(), store=store, job_id=job_id, pod_name=pod_name,
              on_output=on_output, frozen=frozen_requirements(lock))
    fetch_locked_models(remote, cloud, lock, on_output=on_output)
    observed = observe(remote, lock)
    report = compare(lock, observed, pod_image=pod_image, subject=pod_name or getattr(remote, "pod_id", ""))
    bad = [i for i in report.drifted if i.component == "model"]
    if bad:
        _delete_files(remote, [observed["files"][i.name].get("where") for i in bad if observed["files"].get(i.name)])
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelHashMismatchError(
            f"model file {first.name} does not match pistachio.lock: pinned {first.pinned}, got {first.actual}{more};"
            " the file was deleted from the pod and the rebuild stopped",
            "the hub served other bytes for the pinned revision: retry later, or, if the change is intended, review"
            f" it with `pistachio-infra lock --upgrade {first.name.split(':', 1)[0]}`",
        )
    if report.drifted:
        raise RebuildError(
            f"pod {pod_name or getattr(remote, 'pod_id', '?')} differs from the lock after the rebuild: "
            + "; ".join(i.line() for i in report.drifted[:5])
            + (f" (+{len(report.drifted) - 5} more)" if len(report.drifted) > 5 else ""),
            "a package the lock pins may not install on this image: see `pistachio-infra logs POD --job bootstrap`",
        )
    if store is not None:
        store.add_event(job_id, "rebuild", {"pod": pod_name, "lock": lock.digest(), **report.as_dict()})
    return report


def model_fetch_items(lock: Lock, workspace: str) -> list[dict[str, Any]]:
    """fetch_models.py items for the lock's files: single files by pinned revision, snapshots by pinned revision."""
    ws = workspace.rstrip("/")
    items: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for name, f in lock.model_files():
        if lock.models[name].snapshot:
            if (f.repo_id, f.revision) not in seen:
                seen.add((f.repo_id, f.revision))
                items.append({"kind": "snapshot", "repo_id": f.repo_id, "revision": f.revision,
                              "cache_dir": f"{ws}/{f.dest}/hub"})
        else:
            items.append({"kind": "file", "repo_id": f.repo_id, "revision": f.revision, "path": f.path,
                          "dest": f.dest})
    return items


def fetch_locked_models(
    remote: Any, cloud: Cloud, lock: Lock, *, on_output: Callable[[str], None] | None = None
) -> None:
    """Download the lock's model files on the pod (templates/fetch_models.py as a detached job: survives SSH drops;
    files already there with matching hashes are skipped)."""
    from ..pods.bootstrap import BootstrapError
    from ..pods.scripts import template_text, write_files

    items = model_fetch_items(lock, str(remote.workspace))
    if not items:
        return
    ws = str(remote.workspace).rstrip("/")
    state = f"{ws}/.pistachio/lock"
    script, config = f"{state}/fetch_models.py", f"{state}/models.json"
    manifest = f"{ws}/.pistachio/models-manifest.json"
    write_files(remote, {script: template_text("fetch_models.py"),
                         config: json.dumps({"workspace": ws, "manifest": manifest, "items": items}, indent=1)})
    env = {"HF_ENDPOINT": cloud.hf_endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1"}
    if cloud.hf_token:
        env["HF_TOKEN"] = cloud.hf_token
    running = remote.job(MODELS_JOB)
    if running is None or not running.running:
        remote.start_detached(MODELS_JOB, f"python3 {shlex.quote(script)} {shlex.quote(config)}", env=env, cwd=ws)
    lines: list[str] = []

    def collect(text: str) -> None:
        for line in text.splitlines():
            lines.append(line)
            if on_output is not None:
                on_output(line)

    code = remote.follow(MODELS_JOB, on_output=collect)
    if code != 0:
        tail = " | ".join(line for line in lines[-6:] if line.strip())
        raise BootstrapError(
            f"fetching the locked model files failed on pod {getattr(remote, 'pod_id', '?')} (exit {code}): {tail}",
            f"read the log with `pistachio-infra logs POD --job {MODELS_JOB}`; a rerun skips finished files",
        )


def _delete_files(remote: Any, relative: list[str | None]) -> None:
    paths = [p for p in relative if p]
    if not paths:
        return
    ws = str(remote.workspace).rstrip("/")
    quoted = " ".join(shlex.quote(f"{ws}/{p}") for p in paths)
    # a snapshot file is a symlink into the cache's blobs: remove the blob too
    remote.run(f'for p in {quoted}; do t=$(readlink -f "$p"); rm -f -- "$p" "$t"; done', check=False)


# --- checking -----------------------------------------------------------------------------------------------------


def local_pins(cloud: Cloud, lock: Lock) -> Lock:
    """What this pistachio-infra would pin now for the parts a pod does not hold (tool, GPU classes)."""
    return lock.model_copy(update={"tool": current_tool(), "gpu_classes": resolve_gpu_classes()})


def check_pod(
    remote: Any, cloud: Cloud, lock: Lock, *, pod_image: str | None = None, subject: str = "", rehash: bool = False
) -> DriftReport:
    """`lock --check POD`: every item of the lock against the pod (and the tool/GPU-class pins of this tool)."""
    observed = observe(remote, lock, rehash=rehash)
    return compare(lock, observed, pod_image=pod_image, local=local_pins(cloud, lock), subject=subject)


# --- what a job ran with ------------------------------------------------------------------------------------------


def environment_of_pod(remote: Any, cloud: Cloud, models: Sequence[str], *, pod_image: str | None = None) -> Lock:
    """A lock describing the pod as it is: its repo heads and submodules, its package sets, and its model files
    (the current HF revision's metadata, replaced by what the pod really has where they differ)."""
    lock = Lock(
        cloud=cloud_name(cloud),
        tool=current_tool(),
        image=current_image() if pod_image is None else current_image().model_copy(update={"name": pod_image}),
        repos=pinned_repos(cloud),
        wheels=pinned_wheels(cloud),
        python=python_envs(),
        models=resolve_models(cloud, models),
        gpu_classes=resolve_gpu_classes(),
    )
    observed = observe(remote, lock)
    for name, repo in lock.repos.items():
        seen = observed["repos"].get(name) or {}
        if seen.get("head"):
            lock.repos[name] = repo.model_copy(update={
                "commit": seen["head"],
                "submodules": {p: s for p, s in (seen.get("submodules") or {}).items() if s},
            })
    for env_name, env in lock.python.items():
        seen = observed["python"].get(env_name) or {}
        lock.python[env_name] = env.model_copy(update={"python_version": seen.get("version", ""),
                                                       "packages": dict(sorted((seen.get("packages") or {}).items()))})
    for name, model in lock.models.items():
        files = []
        for f in model.files:
            seen = observed["files"].get(file_key(name, f)) or {}
            if seen.get("present") and (seen.get("sha256") != f.sha256 or seen.get("size") != f.size):
                revision = seen.get("revision") or f.revision
                f = f.model_copy(update={"sha256": seen["sha256"], "size": seen["size"],
                                         "revision": revision if len(revision) == 40 else f.revision})
            if seen.get("present"):
                files.append(f)
        lock.models[name] = model.model_copy(update={"files": files})
    return lock


def current_lock_summary(
    remote: Any,
    cloud: Cloud,
    *,
    models: Sequence[str],
    gpu_class: str | None = None,
    pod_image: str | None = None,
    project_lock: str | Path | None = None,
    save_to: str | Path | None = None,
) -> dict[str, Any]:
    """What a job records about its environment (state + report): the digest of the environment's lock, its pins
    in short, and, when the project has a pistachio.lock, that file's digest and the pod's drift from it.
    `save_to` also writes the full environment as a lock file (e.g. into the run folder: `rebuild --lock` of it
    recreates the environment). Never raises: a failure is recorded as {"error": ...}."""
    try:
        env = environment_of_pod(remote, cloud, models, pod_image=pod_image)
    except Exception as exc:  # the job must not fail because its environment could not be described
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    summary: dict[str, Any] = {
        "digest": env.digest(),
        "tool": env.tool.version,
        "cloud": env.cloud,
        "image": env.image.name,
        "repos": {n: r.commit for n, r in env.repos.items()},
        "submodules": {f"{n}/{p}": s for n, r in env.repos.items() for p, s in r.submodules.items()},
        "python": {n: {"python": e.python_version, "packages": len(e.packages),
                       "sha256": _packages_digest(e.packages)} for n, e in env.python.items()},
        "models": {n: sorted({f"{f.repo_id}@{f.revision}" for f in m.files}) for n, m in env.models.items()},
    }
    if gpu_class and gpu_class in env.gpu_classes:
        cls = env.gpu_classes[gpu_class]
        summary["gpu_class"] = {"name": gpu_class, "profile": cls.profile, "reference_configs": cls.configs}
    if save_to is not None:
        from .lockfile import write_lock

        summary["lock_file"] = str(write_lock(env, save_to))
    if project_lock is not None and Path(project_lock).is_file():
        try:
            pinned = load_lock(project_lock)
            observed = observe(remote, pinned)
            report = compare(pinned, observed, pod_image=pod_image, subject="job pod")
            summary["project_lock"] = {"path": str(project_lock), "digest": pinned.digest(), **report.as_dict()}
        except Exception as exc:
            summary["project_lock"] = {"path": str(project_lock), "error": f"{type(exc).__name__}: {exc}"[:300]}
    return summary


def _packages_digest(packages: dict[str, str]) -> str:
    import hashlib

    text = "\n".join(f"{n}=={v}" for n, v in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
