#!/usr/bin/env python3
"""Runs next to a ComfyUI installation (on a pod, or locally): reports what is installed, and applies a plan.

Standard library only: it runs with the pod's python3 before anything is installed.

    agent.py inventory COMFY_DIR      JSON on stdout: custom node folders (git remote + commit) and model files
    agent.py apply PLAN.json          clone node packs (pinned commit when given), install their requirements,
                                      download models (resumable, sha256-checked); one event per line on stdout:
                                      PISTACHIO-COMFY {"event": ..., ...}

PLAN.json: {"comfy_dir": D, "python": P, "packs": [{"url", "dest", "commit", "pip"}],
            "models": [{"url", "dest", "size", "sha256", "auth"}]}   dest is relative to D.
HF_TOKEN from the environment is sent (as a bearer token) only for downloads marked "auth".
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PREFIX = "PISTACHIO-COMFY "
CHUNK = 1 << 20


def emit(event, **fields):
    print(PREFIX + json.dumps({"event": event, **fields}), flush=True)


def git(args, cwd=None):
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def inventory(comfy_dir):
    root = Path(comfy_dir)
    packs = []
    nodes_dir = root / "custom_nodes"
    if nodes_dir.is_dir():
        for entry in sorted(nodes_dir.iterdir()):
            if not entry.is_dir() or entry.name.startswith((".", "__")):
                continue
            is_git = (entry / ".git").exists()
            packs.append(
                {
                    "dir": entry.name,
                    "url": git(["config", "--get", "remote.origin.url"], entry) if is_git else None,
                    "commit": git(["rev-parse", "HEAD"], entry) if is_git else None,
                    "disabled": entry.name.endswith(".disabled"),
                }
            )
    models = {}
    models_dir = root / "models"
    if models_dir.is_dir():
        for dirpath, dirnames, filenames in os.walk(models_dir, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or name.endswith(".part"):
                    continue
                path = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    models[path.relative_to(models_dir).as_posix()] = path.stat().st_size
    return {
        "comfy_dir": str(root),
        "exists": root.is_dir(),
        "main_py": (root / "main.py").is_file(),
        "custom_nodes": packs,
        "models": models,
    }


def run_logged(argv, cwd=None):
    emit("command", argv=argv)
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout.splitlines()[-20:]:
        print("  " + line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}")


def install_pack(root, python, pack):
    dest = root / pack["dest"]
    if dest.exists():
        emit("pack", url=pack["url"], dest=pack["dest"], status="present")
        return
    tmp = dest.with_name("." + dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    run_logged(["git", "clone", "--quiet", pack["url"], str(tmp)])
    if pack.get("commit"):
        run_logged(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", pack["commit"]], cwd=tmp)
    if (tmp / ".gitmodules").exists():
        run_logged(["git", "submodule", "update", "--init", "--recursive", "--quiet"], cwd=tmp)
    if (tmp / "requirements.txt").exists():
        run_logged([python, "-m", "pip", "install", "-r", "requirements.txt"], cwd=tmp)
    if pack.get("pip"):
        run_logged([python, "-m", "pip", "install", *pack["pip"]], cwd=tmp)
    if (tmp / "install.py").exists():
        run_logged([python, "install.py"], cwd=tmp)
    os.replace(tmp, dest)
    emit("pack", url=pack["url"], dest=pack["dest"], status="installed", commit=git(["rev-parse", "HEAD"], dest))


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(root, model):
    dest = root / model["dest"]
    if dest.exists() and (model.get("size") is None or dest.stat().st_size == model["size"]):
        emit("model", dest=model["dest"], status="present")
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "pistachio-infra-comfy-agent"}
    token = os.environ.get("HF_TOKEN")
    if model.get("auth") and token:
        headers["Authorization"] = "Bearer " + token
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(model["url"], headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete
            response = None
        else:
            hint = " (gated or private: set HF_TOKEN)" if exc.code in (401, 403) else ""
            raise RuntimeError(f"download of {model['dest']} failed: HTTP {exc.code}{hint}") from None
    total = model.get("size")
    if response is not None:
        with response:
            if have and response.status != 206:  # server ignored the Range: start over
                have = 0
            length = response.headers.get("Content-Length")
            if total is None and length is not None:
                total = have + int(length)
            done, last = have, 0.0
            with open(part, "ab" if have else "wb") as fh:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    now = time.monotonic()
                    if now - last > 0.25:
                        emit("progress", dest=model["dest"], done=done, total=total)
                        last = now
    size = part.stat().st_size
    emit("progress", dest=model["dest"], done=size, total=total)
    if model.get("size") is not None and size != model["size"]:
        part.unlink()
        raise RuntimeError(f"{model['dest']}: got {size} bytes, the source says {model['size']}; deleted")
    digest = sha256_of(part)
    if model.get("sha256") and digest != model["sha256"]:
        part.unlink()
        raise RuntimeError(f"{model['dest']}: sha256 {digest} differs from the source's {model['sha256']}; deleted")
    os.replace(part, dest)
    emit("model", dest=model["dest"], status="downloaded", size=size, sha256=digest, verified=bool(model.get("sha256")))


def apply(plan_path):
    plan = json.loads(Path(plan_path).read_text())
    root = Path(plan["comfy_dir"])
    python = plan.get("python") or sys.executable
    failures = 0
    for pack in plan.get("packs", []):
        try:
            install_pack(root, python, pack)
        except Exception as exc:
            failures += 1
            emit("error", item=pack["dest"], message=str(exc))
    for model in plan.get("models", []):
        try:
            download(root, model)
        except Exception as exc:
            failures += 1
            emit("error", item=model["dest"], message=str(exc))
    emit("done", failures=failures)
    return 1 if failures else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "inventory":
        print(json.dumps(inventory(argv[2])))
        return 0
    if len(argv) == 3 and argv[1] == "apply":
        return apply(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
