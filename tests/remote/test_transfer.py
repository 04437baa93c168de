"""Tree and file transfers: sha256 manifests skip unchanged files, received files are verified, few round trips."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from pistachio_infra.remote import TransferError


def make_dataset(root: Path, n: int = 24) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"img_{i:02d}.png" if i % 6 else f"sub dir/img_{i:02d}.png"
        files[rel] = os.urandom(20_000 + i)
        files[rel.replace(".png", ".txt")] = f"caption {i}".encode()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_put_tree_sends_once_then_only_what_changed(remote, pod, tmp_path):
    local = tmp_path / "dataset"
    files = make_dataset(local)
    target = f"{remote.workspace}/dataset"

    first = remote.put_tree(local, target, progress=False)
    assert (first.files, first.sent, first.unchanged) == (48, 48, 0)
    assert first.bytes == sum(len(d) for d in files.values())
    assert first.round_trips <= 3, "a dataset upload is a handful of round trips, not one per file"
    for rel, data in files.items():
        assert pod.local(f"{target}/{rel}").read_bytes() == data

    second = remote.put_tree(local, target, progress=False)
    assert (second.sent, second.unchanged, second.bytes) == (0, 48, 0)
    assert second.round_trips == 1

    (local / "img_03.png").write_bytes(b"edited")
    third = remote.put_tree(local, target, progress=False)
    assert third.paths == ("img_03.png",) and third.bytes == 6
    assert pod.local(f"{target}/img_03.png").read_bytes() == b"edited"

    pod.local(f"{target}/img_05.txt").write_text("tampered on the pod")
    fourth = remote.put_tree(local, target, progress=False)
    assert fourth.paths == ("img_05.txt",)
    assert pod.local(f"{target}/img_05.txt").read_bytes() == files["img_05.txt"]


def test_sha256_hashes_many_files_in_one_round_trip(remote, pod):
    names = ["a.bin", "with space.bin", "quote'it.bin", "back\\slash.bin"]
    for n in names:
        (pod.workspace_dir / n).write_bytes(n.encode() * 3)
    paths = [f"{pod.workspace}/{n}" for n in names] + [f"{pod.workspace}/missing.bin"]
    before = remote.round_trips
    hashes = remote.sha256(paths)
    assert remote.round_trips - before == 1
    assert hashes == {f"{pod.workspace}/{n}": hashlib.sha256(n.encode() * 3).hexdigest() for n in names}


def test_get_file_downloads_atomically_and_verifies(remote, pod, tmp_path):
    data = os.urandom(300_000)
    src = f"{pod.workspace}/out/adapter_model.safetensors"
    pod.local(src).parent.mkdir()
    pod.local(src).write_bytes(data)
    local = tmp_path / "got" / "adapter_model.safetensors"
    digest = remote.get_file(src, local, expected_sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert digest == hashlib.sha256(data).hexdigest()
    assert local.read_bytes() == data
    assert not local.with_name(local.name + ".part").exists()


def test_get_file_refuses_a_file_that_is_not_the_expected_one(remote, pod, tmp_path):
    (pod.workspace_dir / "model.bin").write_bytes(b"weights")
    local = tmp_path / "model.bin"
    with pytest.raises(TransferError, match="expected 0000"):
        remote.get_file(f"{pod.workspace}/model.bin", local, expected_sha256="0" * 64, progress=False)
    assert not local.exists()
    with pytest.raises(TransferError, match="does not exist"):
        remote.get_file(f"{pod.workspace}/nope.bin", local, progress=False)


def test_get_file_detects_a_file_corrupted_between_hash_and_download(remote, pod, tmp_path):
    src = f"{pod.workspace}/adapter.safetensors"
    on_disk = pod.local(src)
    on_disk.write_bytes(b"A" * 200_000)
    os.utime(on_disk, ns=(1_000_000_000, 2_000_000_000))  # atime < mtime: the next read (the hash) updates atime
    seen = on_disk.stat().st_atime_ns
    corrupted = threading.Event()

    def corrupt_after_hashing() -> None:  # the pod's file changes right after sha256sum has read it
        deadline = time.monotonic() + 20
        while on_disk.stat().st_atime_ns == seen and time.monotonic() < deadline:
            time.sleep(0.0005)
        with on_disk.open("r+b") as fh:
            fh.write(b"X")
        corrupted.set()

    watcher = threading.Thread(target=corrupt_after_hashing)
    watcher.start()
    local = tmp_path / "adapter.safetensors"
    try:
        with pytest.raises(TransferError, match="arrived corrupted"):
            remote.get_file(src, local, progress=False)
    finally:
        watcher.join()
    assert corrupted.is_set()
    assert not local.exists() and not local.with_name(local.name + ".part").exists()
    # the file is stable again: a retry succeeds and matches the pod's current content
    assert remote.get_file(src, local, progress=False) == hashlib.sha256(on_disk.read_bytes()).hexdigest()


def test_get_tree_fetches_selected_files_and_skips_unchanged(remote, pod, tmp_path):
    out_remote = f"{pod.workspace}/output/20260101_00-00-00"
    out = pod.local(out_remote)
    files = {
        "step100/adapter_model.safetensors": os.urandom(5000),
        "step200/adapter_model.safetensors": os.urandom(5000),
        "step200/adapter_config.json": b"{}",
        "step200/training.toml": b"wandb_api_key = 'never harvest me'",
        "global_step200/optimizer.pt": os.urandom(20000),
    }
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    local = tmp_path / "harvest"

    def wanted(rel: str) -> bool:
        return rel.endswith(("adapter_model.safetensors", "adapter_config.json"))

    stats = remote.get_tree(out_remote, local, include=wanted, progress=False)
    assert sorted(stats.paths) == sorted(rel for rel in files if wanted(rel))
    assert stats.round_trips <= 4
    got = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    assert got == {rel: data for rel, data in files.items() if wanted(rel)}

    again = remote.get_tree(out_remote, local, include=wanted, progress=False)
    assert (again.sent, again.unchanged) == (0, 3)

    (out / "step100/adapter_model.safetensors").write_bytes(b"retrained")
    third = remote.get_tree(out_remote, local, include=wanted, progress=False)
    assert third.paths == ("step100/adapter_model.safetensors",)
    assert (local / "step100/adapter_model.safetensors").read_bytes() == b"retrained"


def test_get_tree_of_a_missing_folder_is_a_clear_error(remote, tmp_path):
    with pytest.raises(TransferError, match="cannot list"):
        remote.get_tree("/no/such/output", tmp_path / "x", progress=False)


def test_put_tree_resumes_after_the_connection_drops_mid_upload(remote, pod, tmp_path):
    local = tmp_path / "big"
    local.mkdir()
    payload = {"model.bin": os.urandom(24 << 20), "a.txt": b"a", "b.txt": b"b"}
    for rel, data in payload.items():
        (local / rel).write_bytes(data)
    target = f"{remote.workspace}/upload"
    partial = pod.local(f"{target}/model.bin")
    first_connection = remote.connection
    dropped = threading.Event()

    def drop_mid_upload() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if partial.exists() and 0 < partial.stat().st_size < len(payload["model.bin"]):
                pod.drop_connections()
                dropped.set()
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=drop_mid_upload)
    watcher.start()
    try:
        stats = remote.put_tree(local, target, progress=False)
    finally:
        watcher.join()
    assert dropped.is_set(), "the connection was not dropped during the upload"
    assert remote.connection is not first_connection
    assert "model.bin" in stats.paths
    for rel, data in payload.items():
        assert pod.local(f"{target}/{rel}").read_bytes() == data
    assert remote.put_tree(local, target, progress=False).sent == 0
