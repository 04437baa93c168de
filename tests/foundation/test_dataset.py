from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from pistachio_infra.dataset.scan import preflight, scan_dataset, split_names, trigger_warnings
from pistachio_infra.errors import DatasetError


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_clean_folder_passes_with_manifest_and_split(tmp_path, make_images):
    folder = tmp_path / "set"
    paths = make_images(folder, 25, captions={0: "al1ce, a woman in a red coat", 1: "al1ce, smiling"})
    before = snapshot(folder)
    report = preflight(folder, trigger="al1ce", seed=3)
    assert report.ok and report.errors == []
    assert len(report.usable) == 25
    assert report.captioned == ["img000.png", "img001.png"]
    assert len(report.to_caption) == 23
    assert (len(report.train), len(report.eval)) == (20, 5)
    assert sorted(report.train + report.eval) == sorted(p.name for p in paths)
    manifest = report.manifest()
    by_name = {f["name"]: f for f in manifest["files"]}
    for p in paths:
        assert by_name[p.name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert (by_name[p.name]["width"], by_name[p.name]["height"]) == (400, 400)
    out = report.write_manifest(tmp_path / "out" / "manifest.json")
    assert json.loads(out.read_text())["eval"] == report.eval
    assert snapshot(folder) == before  # nothing in the user's folder changed
    with pytest.raises(DatasetError, match="into the dataset folder"):
        report.write_manifest(folder / "manifest.json")


def test_corrupt_and_truncated_images_are_named_and_refused(tmp_path, make_images):
    folder = tmp_path / "set"
    paths = make_images(folder, 22, fmt="jpg")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(random.Random(1).randbytes(300)))
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) // 2])  # truncated JPEG: header fine, pixels missing
    png = folder / "cut.png"
    Image.new("RGB", (600, 600), (1, 2, 3)).save(png)
    png.write_bytes(png.read_bytes()[:-40])
    before = snapshot(folder)
    report = scan_dataset(folder)
    named = " ".join(report.errors)
    assert "garbage.png" in named and paths[3].name in named and "cut.png" in named
    assert not report.ok
    with pytest.raises(DatasetError) as err:
        preflight(folder)
    assert "garbage.png" in str(err.value) and paths[3].name in str(err.value)
    assert snapshot(folder) == before


def test_too_few_images_refused_and_few_warned(tmp_path, make_images):
    make_images(tmp_path / "four", 4)
    with pytest.raises(DatasetError, match="4 usable image"):
        preflight(tmp_path / "four")
    make_images(tmp_path / "twelve", 12)
    report = preflight(tmp_path / "twelve")
    assert any("only 12 images" in w for w in report.warnings)
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")


def test_duplicates_are_flagged_and_kept_out_of_the_split(tmp_path, make_images):
    folder = tmp_path / "set"
    paths = make_images(folder, 20)
    (folder / "zcopy.png").write_bytes(paths[5].read_bytes())
    report = preflight(folder)
    assert any("zcopy.png is identical to img005.png" in w for w in report.warnings)
    assert "zcopy.png" not in report.train + report.eval
    assert len(report.usable) == 20 and len(report.images) == 21
    dup = {f["name"]: f for f in report.manifest()["files"]}["zcopy.png"]
    assert dup["duplicate_of"] == "img005.png"


def test_only_duplicates_count_once(tmp_path, make_images):
    folder = tmp_path / "set"
    paths = make_images(folder, 3)
    for i in range(4):
        (folder / f"dup{i}.png").write_bytes(paths[0].read_bytes())
    with pytest.raises(DatasetError, match="3 usable image"):
        preflight(folder)


def test_formats_oddities_and_sizes(tmp_path, make_images):
    folder = tmp_path / "set"
    make_images(folder, 20, fmt="webp")
    frames = [Image.new("RGB", (512, 512), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:])
    Image.new("RGB", (200, 180), (9, 9, 9)).save(folder / "tiny.png")
    Image.new("L", (4200, 2800), 77).save(folder / "huge.png")
    Image.new("RGB", (1200, 400), (50, 60, 70)).save(folder / "wide.jpg")
    (folder / "notes.md").write_text("hello")
    (folder / "job.toml").write_text('character = "x"\n')
    (folder / "clip.mp4").write_bytes(b"\x00" * 64)
    (folder / "sub").mkdir()
    report = scan_dataset(folder)
    text = " ".join(report.warnings)
    assert any("anim.webp: animated WebP" in e for e in report.errors)
    assert "anim.gif: animated GIF, only its first frame" in text
    assert "tiny.png: 200x180 is small" in text
    assert "huge.png: 4200x2800 is very large" in text
    assert "wide.jpg: aspect ratio 3.00" in text
    assert "notes.md" in text and "clip.mp4" in text and "sub/" in text and "job.toml" not in text


def test_shared_caption_stem_is_refused(tmp_path, make_images):
    folder = tmp_path / "set"
    make_images(folder, 20)
    Image.new("RGB", (512, 512), (3, 3, 3)).save(folder / "img000.jpg")
    report = scan_dataset(folder)
    assert any("img000.jpg, img000.png share the caption file img000.txt" in e for e in report.errors)


def test_trigger_word_sanity(tmp_path, make_images):
    assert any("English word" in w for w in trigger_warnings("cat", {}))
    assert any("no digit" in w for w in trigger_warnings("ohwx", {}))
    assert trigger_warnings("zxq7", {"a.png": "zxq7, a man on a bike"}) == []
    other = trigger_warnings("zxq7", {"a.png": "zxq7, a man holding a zxq7 sign", "b.png": "a dog"})
    assert any("already appears inside 1 caption" in w and "a.png" in w for w in other)
    assert any("do not contain the trigger" in w and "b.png" in w for w in other)
    folder = tmp_path / "set"
    make_images(folder, 20)
    report = scan_dataset(folder, trigger="two words")
    assert any("not one token" in e for e in report.errors)
    assert any("English word" in w for w in scan_dataset(folder, trigger="woman").warnings)


def test_split_is_deterministic_complete_and_stable():
    names = [f"img{i:03d}.png" for i in range(50)]
    train, held = split_names(names, seed=1, eval_fraction=0.2)
    assert len(held) == 10 and set(train) | set(held) == set(names) and not set(train) & set(held)
    shuffled = list(reversed(names))
    assert split_names(shuffled, 1, 0.2) == (train, held)
    assert split_names(names, 2, 0.2)[1] != held
    # an image's side depends on its own hash rank, not on list position: adding images keeps old train images
    _, held2 = split_names([*names, *(f"new{i}.png" for i in range(5))], 1, 0.2)
    assert len(held2) == 11 and set(held2) - {f"new{i}.png" for i in range(5)} <= set(held) | set(train)
    assert split_names(["a.png", "b.png"], 0, 0.2) in ((["a.png"], ["b.png"]), (["b.png"], ["a.png"]))
    with pytest.raises(ValueError):
        split_names(["a.png"], 0, 0.2)
