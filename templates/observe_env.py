#!/usr/bin/env python3
"""Describe what a pod really has, for `pistachio-infra lock` / `lock --check` / `rebuild` (run on the pod).

Usage: observe_env.py CONFIG.json, where CONFIG is
  {"workspace": DIR, "manifest": FILE (fetch_models.py's record), "rehash": false,
   "repos":   [{"name": N, "dest": DIR}],
   "pythons": [{"name": N, "python": EXE, "own_site_only": bool}],
   "files":   [{"key": K, "kind": "file"|"snapshot", "repo_id": R, "revision": V, "path": P, "dest": D}]}
Prints one line `PISTACHIO-OBSERVED {json}` with, per repo, its HEAD, dirtiness and submodule commits; per Python,
its version and installed distributions (what `pip freeze` lists: pip, setuptools and wheel left out); per model
file, whether it is there, its size, sha256 and the revision it was fetched at (when huggingface_hub recorded one).
A file's sha256 comes from the fetch manifest when its size and mtime are unchanged since it was hashed there
(`rehash` forces hashing).
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import sys

FREEZE_SKIP = {"pip", "setuptools", "wheel", "distribute"}


def run(argv, cwd=None):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stdout.strip()


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def repo_state(dest):
    if not os.path.isdir(os.path.join(dest, ".git")) and not os.path.isfile(os.path.join(dest, ".git")):
        return {"present": False}
    code, head = run(["git", "-C", dest, "rev-parse", "HEAD"])
    if code != 0:
        return {"present": False}
    _, dirty = run(["git", "-C", dest, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all"])
    subs = {}
    _, status = run(["git", "-C", dest, "submodule", "status", "--recursive"])
    for line in status.splitlines():
        if len(line) < 42:
            continue
        flag, rest = line[0], line[1:]
        parts = rest.split()
        if len(parts) < 2:
            continue
        sha, path = parts[0], parts[1]
        if flag == "-":
            subs[path] = None  # not checked out
            continue
        code, actual = run(["git", "-C", os.path.join(dest, path), "rev-parse", "HEAD"])
        subs[path] = actual if code == 0 else sha
    return {"present": True, "head": head, "dirty": bool(dirty), "submodules": subs}


def python_state(python, own_site_only):
    code, version = run([python, "-c", "import platform; print(platform.python_version())"])
    if code != 0:
        return {"present": False}
    argv = [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
    if own_site_only:
        code, site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        argv += ["--path", site]
    code, listing = run(argv)
    if code != 0:
        return {"present": True, "version": version, "error": "pip list failed"}
    packages = {}
    for dist in json.loads(listing or "[]"):
        name = norm(dist["name"])
        if name not in FREEZE_SKIP:
            packages[name] = dist["version"]
    return {"present": True, "version": version, "packages": packages}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def recorded(manifest, ws, path):
    """The fetch manifest's entry for a file (keyed by its path relative to the workspace), if any."""
    rel = os.path.relpath(path, ws)
    for entry in manifest.values():
        meta = (entry.get("files") or {}).get(rel)
        if meta:
            return meta
    return None


def local_dir_revision(ws, item):
    """hf_hub_download(local_dir=...) records the commit it fetched in .cache/huggingface/download/<path>.metadata."""
    dest, path = item["dest"], item["path"]
    candidates = []
    if dest == path or dest.endswith("/" + path):
        candidates.append(os.path.join(ws, dest[: len(dest) - len(path)], ".cache", "huggingface", "download"))
    candidates.append(os.path.join(ws, ".pistachio", "hf-download", ".cache", "huggingface", "download"))
    for folder in candidates:
        try:
            with open(os.path.join(folder, path + ".metadata")) as fh:
                return fh.readline().strip() or None
        except OSError:
            continue
    return None


def snapshot_location(ws, item):
    """The file in the HF cache under `dest`/hub: at the locked revision if there, else at any other one."""
    repo_dir = os.path.join(ws, item["dest"], "hub", "models--" + item["repo_id"].replace("/", "--"))
    exact = os.path.join(repo_dir, "snapshots", item["revision"], item["path"])
    if os.path.exists(exact):
        return exact, item["revision"]
    for found in sorted(glob.glob(os.path.join(glob.escape(repo_dir), "snapshots", "*", item["path"]))):
        if os.path.exists(found):
            rel = os.path.relpath(found, os.path.join(repo_dir, "snapshots"))
            return found, rel.split(os.sep, 1)[0]
    return None, None


def file_state(ws, manifest, item, rehash):
    if item["kind"] == "snapshot":
        path, revision = snapshot_location(ws, item)
    else:
        path = os.path.join(ws, item["dest"])
        revision = local_dir_revision(ws, item) if os.path.exists(path) else None
    if path is None or not os.path.isfile(path):
        return {"present": False}
    st = os.stat(path)
    meta = None if rehash else recorded(manifest, ws, path)
    if meta and meta.get("size") == st.st_size and meta.get("mtime_ns") == st.st_mtime_ns and meta.get("sha256"):
        digest = meta["sha256"]
    else:
        digest = sha256(path)
    return {"present": True, "size": st.st_size, "sha256": digest, "revision": revision,
            "where": os.path.relpath(path, ws)}


def main():
    with open(sys.argv[1]) as fh:
        config = json.load(fh)
    ws = config["workspace"]
    try:
        with open(config["manifest"]) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        manifest = {}
    out = {
        "repos": {r["name"]: repo_state(r["dest"]) for r in config["repos"]},
        "python": {p["name"]: python_state(p["python"], p["own_site_only"]) for p in config["pythons"]},
        "files": {f["key"]: file_state(ws, manifest, f, config.get("rehash", False)) for f in config["files"]},
    }
    print("PISTACHIO-OBSERVED " + json.dumps(out, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
