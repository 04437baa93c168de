#!/usr/bin/env python3
"""Fetch base-model files from the Hugging Face hub into the pod's workspace (run on the pod by bootstrap.sh).

Usage: fetch_models.py CONFIG.json, where CONFIG is
  {"workspace": DIR, "manifest": FILE, "items": [
     {"kind": "file", "repo_id": R, "revision": V, "path": P, "dest": D},      # D relative to the workspace
     {"kind": "snapshot", "repo_id": R, "revision": V, "cache_dir": C}]}       # C: an HF hub cache directory
HF_ENDPOINT and HF_TOKEN come from the environment (huggingface_hub reads them). A manifest on the workspace records
what was downloaded with its sha256, size and mtime: an item whose files are all present and match is skipped
without touching the network, so a second pod on the same network volume downloads nothing. A downloaded LFS file
whose sha256 differs from the hub's is deleted and the run fails.
"""

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def describe(path):
    st = os.stat(path)
    return {"sha256": sha256(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def matches(path, entry):
    """Unchanged since recorded: same size and mtime (cheap), or else the same sha256."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != entry.get("size"):
        return False
    if st.st_mtime_ns == entry.get("mtime_ns"):
        return True
    if sha256(path) == entry.get("sha256"):
        entry["mtime_ns"] = st.st_mtime_ns
        return True
    return False


def key_of(item):
    if item["kind"] == "file":
        return "file:" + item["dest"]
    return "snapshot:{}@{}".format(item["repo_id"], item["revision"])


def present(ws, entry):
    files = entry.get("files") or {}
    return bool(files) and all(matches(str(ws / rel), meta) for rel, meta in files.items())


def fetch_file(ws, item):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    dest = ws / item["dest"]
    path = item["path"]
    if item["dest"].endswith("/" + path) or item["dest"] == path:
        local_dir = ws / item["dest"][: len(item["dest"]) - len(path)]
        got = Path(hf_hub_download(item["repo_id"], path, revision=item["revision"], local_dir=str(local_dir),
                                   force_download=True))  # it did not match the manifest: fetch it again
    else:
        tmp_dir = ws / ".pistachio" / "hf-download"
        got = Path(hf_hub_download(item["repo_id"], path, revision=item["revision"], local_dir=str(tmp_dir),
                                   force_download=True))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(got, dest)
        got = dest
    meta = describe(str(got))
    etag = get_hf_file_metadata(hf_hub_url(item["repo_id"], path, revision=item["revision"])).etag or ""
    etag = etag.strip('"').lower()
    if SHA256_RE.match(etag) and etag != meta["sha256"]:
        os.unlink(got)
        raise SystemExit("{}/{}: sha256 {} differs from the hub's {}; deleted".format(
            item["repo_id"], path, meta["sha256"], etag))
    return {str(got.relative_to(ws)): meta}


def fetch_snapshot(ws, item):
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(item["repo_id"], revision=item["revision"], cache_dir=item["cache_dir"]))
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(ws))] = describe(str(path.resolve()))
    return files


def main():
    config = json.loads(Path(sys.argv[1]).read_text())
    ws = Path(config["workspace"])
    manifest_path = Path(config["manifest"])
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    t0 = time.time()
    downloaded = 0
    for item in config["items"]:
        key = key_of(item)
        t1 = time.time()
        entry = manifest.get(key)
        if entry and entry.get("revision") == item["revision"] and present(ws, entry):
            print("PISTACHIO-MODEL " + json.dumps({"item": key, "status": "skipped", "seconds": 0.0}), flush=True)
            continue
        print("== downloading " + key, flush=True)
        files = fetch_file(ws, item) if item["kind"] == "file" else fetch_snapshot(ws, item)
        manifest[key] = {"repo_id": item["repo_id"], "revision": item["revision"], "files": files,
                         "fetched_epoch": time.time()}
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, manifest_path)
        downloaded += 1
        size = sum(f["size"] for f in files.values())
        print("PISTACHIO-MODEL " + json.dumps({"item": key, "status": "done", "bytes": size,
                                               "seconds": round(time.time() - t1, 3)}), flush=True)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))  # refreshed mtimes
    os.replace(tmp, manifest_path)
    status = "done" if downloaded else "skipped"
    print("PISTACHIO-STEP " + json.dumps({"step": "models", "status": status,
                                          "seconds": round(time.time() - t0, 3)}), flush=True)


if __name__ == "__main__":
    main()
