"""Compare a pistachio.lock with a live pod (or with another lock), item by item: what is pinned vs what is there.

`observe(remote, lock)` runs templates/observe_env.py on the pod (one SSH round trip for the script, one to run it)
and returns what it found; `compare(lock, observed, ...)` turns that into `Item`s; `compare_locks(old, new)` does
the same for two locks (what `lock --upgrade` shows before writing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PistachioError
from .lockfile import SYSTEM_PYTHON, Lock, ModelFileLock

OK = "ok"
CHANGED = "changed"
MISSING = "missing"  # pinned, not there
EXTRA = "extra"  # there, not pinned
UNKNOWN = "unknown"  # could not be observed (e.g. the API reports no image)
DRIFT = (CHANGED, MISSING, EXTRA)
COMPONENTS = ("tool", "image", "repo", "python", "model", "gpu-class")
OBSERVED_TAG = "PISTACHIO-OBSERVED "


@dataclass(frozen=True)
class Item:
    component: str  # one of COMPONENTS
    name: str
    pinned: str | None
    actual: str | None
    status: str
    note: str = ""

    @property
    def drifted(self) -> bool:
        return self.status in DRIFT

    def line(self) -> str:
        text = f"{self.component} {self.name}: {self.status}"
        if self.status == CHANGED:
            text += f" (pinned {self.pinned}, found {self.actual})"
        elif self.status == MISSING:
            text += f" (pinned {self.pinned})"
        elif self.status == EXTRA:
            text += f" (found {self.actual})"
        return text + (f"; {self.note}" if self.note else "")


@dataclass
class DriftReport:
    items: list[Item] = field(default_factory=list)
    subject: str = ""  # the pod (or lock) compared

    @property
    def drifted(self) -> list[Item]:
        return [i for i in self.items if i.drifted]

    @property
    def clean(self) -> bool:
        return not self.drifted

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for item in self.items:
            per = out.setdefault(item.component, {})
            per[item.status] = per.get(item.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "clean": self.clean,
            "counts": self.counts(),
            "drift": [i.line() for i in self.drifted],
        }


# --- observing a pod ------------------------------------------------------------------------------------------------


def file_key(model: str, f: ModelFileLock) -> str:
    return f"{model}: {f.repo_id}/{f.path}"


def observe_config(lock: Lock, workspace: str, *, rehash: bool = False) -> dict[str, Any]:
    from ..catalog import sources

    ws = workspace.rstrip("/")
    repos = sources().repos
    return {
        "workspace": ws,
        "manifest": f"{ws}/.pistachio/models-manifest.json",
        "rehash": rehash,
        "repos": [{"name": n, "dest": f"{ws}/{repos[n].dest if n in repos else n}"} for n in lock.repos],
        "pythons": [
            {
                "name": n,
                "python": env.interpreter if "/" not in env.interpreter else f"{ws}/{env.interpreter}",
                "own_site_only": env.own_site_only,
            }
            for n, env in lock.python.items()
        ],
        "files": [
            {"key": file_key(name, f), "kind": "snapshot" if lock.models[name].snapshot else "file",
             "repo_id": f.repo_id, "revision": f.revision, "path": f.path, "dest": f.dest}
            for name, f in lock.model_files()
        ],
    }


def observe(remote: Any, lock: Lock, *, rehash: bool = False, timeout: float = 1800) -> dict[str, Any]:
    """What the pod has of everything `lock` names (see templates/observe_env.py for the shape)."""
    from ..pods.scripts import template_text, write_files

    ws = str(remote.workspace)
    state = f"{ws.rstrip('/')}/.pistachio/lock"
    script, config = f"{state}/observe_env.py", f"{state}/observe.json"
    write_files(remote, {script: template_text("observe_env.py"),
                         config: json.dumps(observe_config(lock, ws, rehash=rehash), indent=1)})
    result = remote.run(f"python3 {_q(script)} {_q(config)}", timeout=timeout, check=False)
    for line in result.stdout.splitlines():
        if line.startswith(OBSERVED_TAG):
            return json.loads(line[len(OBSERVED_TAG):])
    raise PistachioError(
        f"could not read the environment of pod {getattr(remote, 'pod_id', '?')} (exit {result.exit_code}): "
        f"{result.stderr.strip()[-300:]}",
        "check that the pod runs and has python3 (`pistachio-infra ssh POD`)",
    )


def _q(value: str) -> str:
    import shlex

    return shlex.quote(value)


# --- comparing ------------------------------------------------------------------------------------------------------


def _short(sha: str | None, n: int = 12) -> str | None:
    return sha[:n] if sha else sha


def _compare_values(component: str, name: str, pinned: str | None, actual: str | None, note: str = "") -> Item:
    if pinned is None:
        return Item(component, name, None, actual, EXTRA, note)
    if actual is None:
        return Item(component, name, pinned, None, MISSING, note)
    return Item(component, name, pinned, actual, OK if pinned == actual else CHANGED, note)


def compare(
    lock: Lock,
    observed: dict[str, Any],
    *,
    pod_image: str | None = None,
    local: Lock | None = None,
    subject: str = "",
) -> DriftReport:
    """Items of `lock` against what `observe` found on a pod. `pod_image`: the image the API says the pod runs
    (None: not known). `local`: the tool, image and GPU-class pins this pistachio-infra would use now."""
    items: list[Item] = []
    if local is not None:
        items.append(_compare_values("tool", lock.tool.name, lock.tool.version, local.tool.version,
                                     "the pistachio-infra running this check"))
        items += _class_items(lock, local)
    if pod_image is None:
        items.append(Item("image", "image", lock.image.name, None, UNKNOWN, "the API did not say which image"))
    else:
        items.append(_compare_values("image", "image", lock.image.name, pod_image))

    repos = observed.get("repos", {})
    for name, repo in lock.repos.items():
        seen = repos.get(name) or {}
        if not seen.get("present"):
            items.append(Item("repo", name, repo.commit, None, MISSING, "no checkout on the pod"))
            continue
        note = "uncommitted changes in the checkout" if seen.get("dirty") else ""
        item = _compare_values("repo", name, repo.commit, seen.get("head"), note)
        if note and item.status == OK:
            item = Item("repo", name, repo.commit, seen.get("head") + " (modified)", CHANGED, note)
        items.append(item)
        subs = seen.get("submodules") or {}
        for path in sorted(set(repo.submodules) | set(subs)):
            items.append(_compare_values("repo", f"{name}/{path}", repo.submodules.get(path), subs.get(path)))

    pythons = observed.get("python", {})
    for env_name, env in lock.python.items():
        seen = pythons.get(env_name) or {}
        label = SYSTEM_PYTHON if env_name == SYSTEM_PYTHON else f"{env_name} venv"
        if not seen.get("present"):
            items.append(Item("python", f"{label} ({env.interpreter})", env.python_version or "present", None,
                              MISSING, "interpreter not found"))
            continue
        items.append(_compare_values("python", f"{label}: Python", env.python_version, seen.get("version")))
        found = seen.get("packages") or {}
        for pkg in sorted(set(env.packages) | set(found)):
            items.append(_compare_values("python", f"{label}: {pkg}", env.packages.get(pkg), found.get(pkg)))

    files = observed.get("files", {})
    for model, f in lock.model_files():
        key = file_key(model, f)
        seen = files.get(key) or {}
        if not seen.get("present"):
            items.append(Item("model", key, f"sha256 {_short(f.sha256, 16)}", None, MISSING, f"expected at {f.dest}"))
            continue
        revision = seen.get("revision")
        if seen.get("sha256") == f.sha256 and seen.get("size") == f.size:
            note = f"same bytes, fetched at revision {_short(revision)}" if revision and revision != f.revision else ""
            items.append(Item("model", key, f"sha256 {_short(f.sha256, 16)}", f"sha256 {_short(f.sha256, 16)}", OK,
                              note))
        else:
            pinned = f"sha256 {_short(f.sha256, 16)} @ {_short(f.revision)}"
            actual = f"sha256 {_short(seen.get('sha256'), 16)} @ {_short(revision) or 'unknown revision'}"
            items.append(Item("model", key, pinned, actual, CHANGED, f"{seen.get('size')} bytes, pinned {f.size}"))
    return DriftReport(items, subject)


def _class_items(old: Lock, new: Lock) -> list[Item]:
    items = []
    for name in sorted(set(old.gpu_classes) | set(new.gpu_classes)):
        a, b = old.gpu_classes.get(name), new.gpu_classes.get(name)
        items.append(_compare_values("gpu-class", f"{name}: profile", _profile_text(a), _profile_text(b)))
        files = sorted(set(a.configs if a else {}) | set(b.configs if b else {}))
        for file in files:
            items.append(_compare_values("gpu-class", f"{name}: {file}", _short((a.configs if a else {}).get(file), 16),
                                         _short((b.configs if b else {}).get(file), 16)))
    return items


def _profile_text(cls: Any) -> str | None:
    if cls is None:
        return None
    return ", ".join(f"{k}={v}" for k, v in sorted(cls.profile.items())) + f", tier={cls.tier}"


def _flat(lock: Lock) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {
        ("tool", lock.tool.name): lock.tool.version,
        ("image", "image"): lock.image.name + (f"@{lock.image.digest}" if lock.image.digest else ""),
    }
    for name, repo in lock.repos.items():
        out[("repo", name)] = repo.commit
        for path, sha in repo.submodules.items():
            out[("repo", f"{name}/{path}")] = sha
    for env_name, env in lock.python.items():
        label = SYSTEM_PYTHON if env_name == SYSTEM_PYTHON else f"{env_name} venv"
        out[("python", f"{label}: Python")] = env.python_version
        for pkg, version in env.packages.items():
            out[("python", f"{label}: {pkg}")] = version
    for model, f in lock.model_files():
        out[("model", file_key(model, f))] = f"sha256 {_short(f.sha256, 16)} @ {_short(f.revision)} ({f.size} bytes)"
    return out


def compare_locks(old: Lock, new: Lock) -> DriftReport:
    """What changes from `old` to `new` (pinned = old, actual = new)."""
    a, b = _flat(old), _flat(new)
    same_bytes = {("model", file_key(m, f)) for m, f in old.model_files()} & {
        ("model", file_key(m, f)) for m, f in new.model_files() if _same_bytes(old, m, f)
    }
    items = [
        _compare_values(component, name, a.get((component, name)), b.get((component, name)),
                        "new revision, same bytes" if (component, name) in same_bytes else "")
        for component, name in _ordered(set(a) | set(b))
    ]
    items += _class_items(old, new)
    return DriftReport(items, "lock")


def _same_bytes(old: Lock, model: str, f: ModelFileLock) -> bool:
    return any(g.sha256 == f.sha256 and g.size == f.size and g.revision != f.revision
               for g in (old.models[model].files if model in old.models else []) if g.path == f.path)


def _ordered(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    rank = {c: i for i, c in enumerate(COMPONENTS)}
    return sorted(keys, key=lambda k: (rank.get(k[0], 99), k[1]))
