"""Stand-in for MNeMoNiCuZ/joy-caption-batch `batch-alpha2.py`, for the pistachio-infra sandbox.

Same command line, output-path rules and failure behaviour as the real script (exit status 0 even when captions
failed), but the "model" is deterministic: it downloads the model snapshot the real way (huggingface_hub, so
HF_ENDPOINT / HF_HOME / HF_TOKEN apply) and describes each image by its size and dominant colour.
Knobs: section "captioner" of the JSON at $PISTACHIO_STANDIN_SCENARIO (`fail_images`: file names or glob patterns
whose batch fails in generate(); `seconds_per_image`).

What it prints follows upstream batch-alpha2.py at 80dd589 (tests/upstream/README.md): progress and errors go through
`logging` ("%(asctime)s %(levelname)s: %(message)s", on stderr), `Caption written to '<path>'` is printed on stdout
only with --print-captioning-status, a failed generate() logs "Generation failed: …" and skips its batch, and an
exception out of main() is logged as "An error occurred: …" with exit status 0.
"""

import argparse
import fnmatch
import json
import logging
import os
import time
from pathlib import Path

PROMPT = "Please provide a detailed description of the image."
PRINT_CAPTIONS = False
PRINT_CAPTIONING_STATUS = False
OVERWRITE = True
PREPEND_STRING = ""
APPEND_STRING = ""
RECURSIVE = True
OUTPUT_FORMAT = "txt"
INPUT_FOLDER = Path(__file__).parent / "input"
OUTPUT_FOLDER = INPUT_FOLDER
TEMPERATURE = 0.5
TOP_K = 10
MAX_NEW_TOKENS = 300
BATCH_PROCESSING_COUNT = 8
SUPPORTED_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tiff", ".tif", ".webp")
PROMPT_FILE = Path(__file__).parent / "default_prompts.json"
MODEL_NAME = "fancyfeast/llama-joycaption-alpha-two-hf-llava"

SCENARIO_DEFAULTS = {"fail_images": [], "seconds_per_image": 0.01}
COLOURS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (200, 30, 30),
    "orange": (240, 140, 20), "yellow": (235, 220, 40), "green": (40, 160, 60), "teal": (30, 150, 150),
    "blue": (40, 70, 200), "purple": (130, 50, 170), "pink": (240, 150, 190), "brown": (120, 75, 40),
}


def load_scenario():
    knobs = dict(SCENARIO_DEFAULTS)
    path = os.environ.get("PISTACHIO_STANDIN_SCENARIO")
    if path and Path(path).is_file():
        knobs.update(json.loads(Path(path).read_text()).get("captioner", {}))
    return knobs


def parse_arguments():
    parser = argparse.ArgumentParser(description="Caption images with JoyCaption Alpha Two")
    parser.add_argument("--glob", type=str, help="Glob pattern to find images")
    parser.add_argument("--filelist", type=str, help="File containing list of images")
    parser.add_argument("--input-folder", action="store_true", help="Also scan the input folder")
    parser.add_argument("--prompt", type=str, default=PROMPT, help="Prompt to use")
    parser.add_argument("--prompt-file", type=str, help=f"JSON file containing prompts (e.g. {PROMPT_FILE})")
    parser.add_argument("--image-seq-length", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1, help="Batch size (unused)")
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--top-k", type=int, default=TOP_K)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--model", type=str, default=MODEL_NAME)
    parser.add_argument("--output-format", type=str, choices=["txt", "json"], default=OUTPUT_FORMAT)
    parser.add_argument("--input-dir", type=str, default=str(INPUT_FOLDER))
    parser.add_argument("--output-dir", type=str, default=None)
    parser.add_argument("--recursive", action="store_true", default=RECURSIVE)
    parser.add_argument("--print-captions", action="store_true", default=PRINT_CAPTIONS)
    parser.add_argument("--print-captioning-status", action="store_true", default=PRINT_CAPTIONING_STATUS)
    parser.add_argument("--overwrite", action="store_true", default=OVERWRITE)
    parser.add_argument("--prepend-string", type=str, default=PREPEND_STRING)
    parser.add_argument("--append-string", type=str, default=APPEND_STRING)
    parser.add_argument("--batch-processing-count", type=int, default=BATCH_PROCESSING_COUNT)
    return parser.parse_args()


def find_images(args, input_folder):
    images = set()
    scan = not (args.glob or args.filelist) or args.input_folder
    if scan and input_folder.is_dir():
        walker = input_folder.rglob("*") if args.recursive else input_folder.glob("*")
        images.update(p for p in walker if p.is_file() and p.suffix.lower() in SUPPORTED_IMAGE_EXTENSIONS)
    if args.glob:
        images.update(p for p in Path.cwd().glob(args.glob) if p.suffix.lower() in SUPPORTED_IMAGE_EXTENSIONS)
    if args.filelist:
        for line in Path(args.filelist).read_text().splitlines():
            if line.strip():
                images.add(Path(line.strip()))
    if not OVERWRITE:
        images = {p for p in images if not p.with_suffix(".txt").exists()}
    return sorted(images)


def output_path(image, input_folder, output_folder):
    try:
        rel = image.resolve().relative_to(input_folder.resolve())
    except ValueError:
        rel = Path(image.name)
    return (output_folder / rel).with_suffix(".txt")


def load_model(name):
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(name))
    with open(path / "config.json") as f:
        json.load(f)
    return path


def describe(image):
    small = image.convert("RGB").resize((384, 384))
    pixels = list(small.resize((16, 16)).getdata())
    mean = tuple(sum(p[i] for p in pixels) / len(pixels) for i in range(3))
    colour = min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], mean, strict=True)))
    w, h = image.size
    shape = "square" if w == h else ("landscape" if w > h else "portrait")
    return f"A {shape} image, {w}x{h} pixels, dominated by {colour} tones, showing a single subject in soft light."


def generate(batch, knobs):
    time.sleep(float(knobs["seconds_per_image"]) * len(batch))
    for path, _ in batch:
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in knobs["fail_images"]):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (sandbox scenario: fail_images)")
    return [describe(image) for _, image in batch]


def main():
    from PIL import Image

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    args = parse_arguments()
    logging.info(f"Arguments: {args}")
    knobs = load_scenario()
    input_folder = Path(args.input_dir)
    output_folder = Path(args.output_dir) if args.output_dir else input_folder
    images = find_images(args, input_folder)
    if not images:
        logging.warning(f"No images found in {images}.")
        return
    logging.info(f"Total images found: {len(images)}")
    logging.info("Overwrite option enabled; all images will be processed.")
    load_model(args.model)
    count = max(1, args.batch_processing_count)
    for start in range(0, len(images), count):
        batch = []
        for path in images[start : start + count]:
            try:
                image = Image.open(path)
                image.load()
                batch.append((path, image))
            except Exception as e:
                logging.error(f"Failed to load image '{path}': {e}")
        if not batch:
            continue
        try:
            captions = generate(batch, knobs)
        except Exception as e:
            logging.error(f"Generation failed: {e}")
            continue
        for (path, _), caption in zip(batch, captions, strict=True):
            text = args.prepend_string + caption + args.append_string
            if args.output_format == "json":
                text = json.dumps({"caption": text}, ensure_ascii=False, indent=2)
            target = output_path(path, input_folder, output_folder)
            if args.print_captions:
                print(f"Caption for '{path}': {text}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                if args.print_captioning_status:
                    print(f"Caption written to '{target}'", flush=True)
            except Exception as e:
                logging.error(f"Failed to write caption to '{target}': {e}")
    logging.info("Captioning completed.")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        logging.error(f"An error occurred: {e}")
