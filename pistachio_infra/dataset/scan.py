"""Preflight of an image folder, before any money is spent: decode every image, formats, count, sizes, duplicates,
captions, trigger-word sanity, the deterministic train/eval split and a sha256 manifest.

Nothing in the user's folder is ever written. `scan_dataset` returns a report; `preflight` also raises
DatasetError when the report has errors.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..paths import data_dir
from .split import split_names

JOB_FILES = ("job.toml", "pistachio-job.toml")  # job files that may sit in a dataset folder

# Opened by DiffusionPipe with Pillow (anything not a video); these are the ones joy-caption-batch also reads.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
# DiffusionPipe skips these in a dataset folder; captions are .txt.
SIDE_SUFFIXES = frozenset({".txt", ".npz", ".json", ".parquet", ".bak", ".db"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".ogv"}
)
MIN_IMAGES = 5  # refuse below
WARN_IMAGES = 20  # warn below
TINY_SIDE = 384  # shorter side below this: upscaled to the training resolution, blurry
HUGE_SIDE = 4096  # longer side above this: slow to upload and cache, no gain at ≤1536 px training
MIN_AR, MAX_AR = 0.5, 2.0  # the aspect-ratio bucket range we render
TRIGGER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,49}$")


@dataclass
class ImageInfo:
    name: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    frames: int = 1
    caption: str | None = None  # the .txt next to the image, stripped; None when missing
    duplicate_of: str | None = None


@dataclass
class DatasetReport:
    folder: Path
    images: list[ImageInfo] = field(default_factory=list)  # every image that decoded, duplicates included
    errors: list[str] = field(default_factory=list)  # any error refuses the dataset
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files that are neither images nor captions
    train: list[str] = field(default_factory=list)
    eval: list[str] = field(default_factory=list)
    seed: int = 42
    eval_fraction: float = 0.2

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def usable(self) -> list[ImageInfo]:
        """Images that will be uploaded: decoded, not a duplicate of an earlier one."""
        return [i for i in self.images if i.duplicate_of is None]

    def sizes(self, names: list[str] | tuple[str, ...] | None = None) -> dict[str, tuple[int, int]]:
        """name -> (width, height) of `names` (default: the train side of the split)."""
        wanted = set(self.train if names is None else names)
        return {i.name: (i.width, i.height) for i in self.usable if i.name in wanted}

    @property
    def captioned(self) -> list[str]:
        return [i.name for i in self.usable if i.caption]

    @property
    def to_caption(self) -> list[str]:
        return [i.name for i in self.usable if not i.caption]

    def manifest(self) -> dict:
        return {
            "folder": str(self.folder),
            "seed": self.seed,
            "eval_fraction": self.eval_fraction,
            "files": [
                {k: v for k, v in asdict(i).items() if k != "caption"} | {"has_caption": bool(i.caption)}
                for i in self.images
            ],
            "train": self.train,
            "eval": self.eval,
        }

    def write_manifest(self, path: str | Path) -> Path:
        path = Path(path)
        if path.resolve().parent == self.folder.resolve():
            raise DatasetError(f"refusing to write {path.name} into the dataset folder", "choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.manifest(), indent=2) + "\n")
        return path


def image_files(folder: Path) -> list[Path]:
    """The images DiffusionPipe would read from `folder`: top level only, not hidden, by suffix."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in
        IMAGE_SUFFIXES
    )


@functools.cache
def english_words() -> frozenset[str]:
    text = (data_dir() / "english_words.txt").read_text()
    lines = (line for line in text.splitlines() if not line.startswith("#"))
    return frozenset(w for line in lines for w in line.split())


def _read_caption(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    if not txt.is_file():
        return None
    try:
        return txt.read_text(encoding="utf-8").strip() or None
    except UnicodeDecodeError:
        return None


def _inspect(path: Path) -> tuple[ImageInfo | None, str | None]:
    """Decode one image fully. Returns (info, None) or (None, why it cannot be used)."""
    import warnings

    from PIL import Image

    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():  # very large images get one line of ours (HUGE_SIDE), not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(path, data, digest)
    except Image.DecompressionBombError:
        return None, f"{path.name}: too many pixels to decode safely"


def _decode(path: Path, data: bytes, digest: str) -> tuple[ImageInfo | None, str | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # structure and checksums
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # every pixel: catches truncation
            info = ImageInfo(
                name=path.name, sha256=digest, size_bytes=len(data), width=im.width, height=im.height,
                format=im.format or "?", frames=getattr(im, "n_frames", 1),
            )
    except UnidentifiedImageError:
        return None, f"{path.name}: not an image Pillow can read (corrupt, or the suffix lies)"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"{path.name}: corrupt or truncated ({exc})"
    return info, None


def trigger_warnings(trigger: str, captions: dict[str, str]) -> list[str]:
    """Why `trigger` may be a poor trigger word (warnings, not errors)."""
    warnings = []
    low = trigger.lower()
    if low in english_words():
        warnings.append(
            f"trigger {trigger!r} is an English word: the text encoder already gives it a meaning; "
            "prefer a made-up token such as 'zxq7'"
        )
    if not any(c.isdigit() or c in "_-" for c in trigger):
        warnings.append(f"trigger {trigger!r} has no digit: tokens like 'al1ce' or 'zxq7' collide less with real words")
    word = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(trigger)}(?![A-Za-z0-9_-])", re.IGNORECASE)
    prefix = re.compile(rf"^\s*{re.escape(trigger)}\s*,?\s*", re.IGNORECASE)
    other_use = sorted(name for name, text in captions.items() if word.search(prefix.sub("", text, count=1)))
    if other_use:
        warnings.append(
            f"trigger {trigger!r} already appears inside {len(other_use)} caption(s) beyond the leading trigger "
            f"(e.g. {other_use[0]}): it may already mean something else in this dataset"
        )
    missing = missing_trigger(trigger, captions)
    if missing:
        warnings.append(
            f"{len(missing)} existing caption(s) do not contain the trigger {trigger!r} (e.g. {missing[0]}); "
            "use --recaption to regenerate them"
        )
    return warnings


def missing_trigger(trigger: str, captions: dict[str, str]) -> list[str]:
    """The images whose caption does not contain `trigger` as a word."""
    word = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(trigger)}(?![A-Za-z0-9_-])", re.IGNORECASE)
    return sorted(name for name, text in captions.items() if not word.search(text))


def scan_dataset(
    folder: str | Path, trigger: str | None = None, seed: int = 42, eval_fraction: float = 0.2,
    recaption: bool = False,
) -> DatasetReport:
    """Everything about `folder` before a pod exists. `recaption`: JoyCaption rewrites every caption (with the
    trigger), so your captions' lack of the trigger is no error."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} not found", "point the job's `dataset` at a folder of images")
    report = DatasetReport(folder=folder, seed=seed, eval_fraction=eval_fraction)

    by_stem: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    root = folder.resolve()
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        suffix = path.suffix.lower()
        if path.is_symlink() and not path.resolve().is_relative_to(root):  # never upload or publish outside files
            report.errors.append(f"{path.name} is a link to {path.resolve()}, outside the dataset folder "
                                 "(copy the file into the folder, or remove the link)")
            continue
        if path.is_dir():
            report.ignored.append(f"{path.name}/ (subfolders are not read)")
            continue
        if suffix in SIDE_SUFFIXES or path.name in JOB_FILES:
            if suffix == ".json" and path.name == "captions.json":
                report.warnings.append("captions.json is ignored: pistachio-infra uses .txt captions")
            continue
        if suffix in VIDEO_SUFFIXES:
            report.ignored.append(f"{path.name} (video: this tool trains on images)")
            continue
        if suffix not in IMAGE_SUFFIXES:
            report.ignored.append(f"{path.name} (not a format DiffusionPipe reads)")
            continue
        info, problem = _inspect(path)
        if problem:
            report.errors.append(problem)
            continue
        assert info is not None
        info.caption = _read_caption(path)
        by_stem.setdefault(path.stem, []).append(path.name)
        if info.frames > 1 and suffix == ".webp":
            report.errors.append(f"{info.name}: animated WebP ({info.frames} frames) is refused by DiffusionPipe")
        elif info.frames > 1 and suffix == ".gif":
            report.warnings.append(f"{info.name}: animated GIF, only its first frame is trained")
        if info.sha256 in seen:
            info.duplicate_of = seen[info.sha256]
            report.warnings.append(f"{info.name} is identical to {info.duplicate_of}; only the first is used")
        else:
            seen[info.sha256] = info.name
        short, long = min(info.width, info.height), max(info.width, info.height)
        if short < TINY_SIDE:
            report.warnings.append(f"{info.name}: {info.width}x{info.height} is small (upscaled, blurry)")
        if long > HUGE_SIDE:
            report.warnings.append(f"{info.name}: {info.width}x{info.height} is very large (slow; downscale it)")
        ratio = info.width / info.height
        if not MIN_AR <= ratio <= MAX_AR:
            report.warnings.append(f"{info.name}: aspect ratio {ratio:.2f} is outside {MIN_AR}-{MAX_AR} (cropped)")
        report.images.append(info)

    for stem, names in by_stem.items():
        if len(names) > 1:
            report.errors.append(f"{', '.join(names)} share the caption file {stem}.txt: rename all but one")
    if report.ignored:
        report.warnings.append(f"{len(report.ignored)} file(s) will not be uploaded: {', '.join(report.ignored)}")

    count = len(report.usable)
    if count < MIN_IMAGES:
        report.errors.append(f"{count} usable image(s): at least {MIN_IMAGES} are needed")
    elif count < WARN_IMAGES:
        report.warnings.append(f"only {count} images: {WARN_IMAGES} or more give a LoRA that generalises")

    empty_txt = [i.name for i in report.usable if i.caption is None and (folder / i.name).with_suffix(".txt").exists()]
    if empty_txt:
        report.warnings.append(f"{len(empty_txt)} caption file(s) are empty or unreadable and will be regenerated")

    if trigger is not None:
        if not TRIGGER_RE.match(trigger):
            report.errors.append(
                f"trigger {trigger!r} is not one token of 2-50 letters, digits, '-' or '_' (e.g. 'zxq7')"
            )
        else:
            captions = {i.name: i.caption for i in report.usable if i.caption}
            warnings = trigger_warnings(trigger, captions)
            missing = [] if recaption else missing_trigger(trigger, captions)
            if missing:  # a LoRA trained on these would not respond to its trigger
                warnings = [w for w in warnings if "do not contain the trigger" not in w]
                txts = [str(Path(n).with_suffix(".txt")) for n in missing]
                report.errors.append(
                    f"{len(missing)} of your caption(s) do not contain the trigger {trigger!r}: {', '.join(txts)} "
                    f"(add {trigger!r} to each, or rerun with --recaption to have JoyCaption write them)"
                )
            report.warnings += warnings

    if count >= 2:
        report.train, report.eval = split_names([i.name for i in report.usable], seed, eval_fraction)
    return report


def preflight(
    folder: str | Path, trigger: str | None = None, seed: int = 42, eval_fraction: float = 0.2,
    recaption: bool = False,
) -> DatasetReport:
    """`scan_dataset`, raising DatasetError (naming every problem) when the folder cannot be trained on."""
    return raise_if_refused(scan_dataset(folder, trigger, seed, eval_fraction, recaption))


def raise_if_refused(report: DatasetReport) -> DatasetReport:
    if report.errors:
        raise DatasetError(
            f"{report.folder}: " + "; ".join(report.errors),
            "fix or remove the files named above (nothing was uploaded or rented)",
        )
    return report
