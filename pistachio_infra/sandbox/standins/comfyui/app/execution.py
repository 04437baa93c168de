"""PISTACHIO SANDBOX STAND-IN for ComfyUI's execution.py: validate a prompt (API-format graph) the way ComfyUI does,
then "run" it: no model runs, the output nodes write deterministic pictures whose content depends on the positive
prompt, the seed, and whether (and which, by content hash, at what strength) a LoRA file was applied.

Validation follows upstream `validate_prompt` / `validate_inputs` (execution.py; see tests/upstream/README.md U4):
  a node without class_type, or of an unknown class  -> error type "invalid_prompt", node_errors {} (first one wins)
  no output node                                     -> "prompt_no_outputs"
  per node reached from an output: required_input_missing, bad_linked_input, return_type_mismatch,
  invalid_input_type, value_smaller_than_min, value_bigger_than_max, value_not_in_list (a model file not in its
  folder is this one: "Value not in list", details "<input>: '<value>' not in [...]")
  -> "prompt_outputs_failed_validation" with node_errors {node_id: {errors, dependent_outputs, class_type}}.
"""

import hashlib
import json
import os
import time
from pathlib import Path

from nodes import FOLDER, FOLDERS, SPECS


def filename_list(root, folder):
    files = set()
    for sub in FOLDERS.get(folder, (folder,)):
        base = Path(root) / "models" / sub
        if base.is_dir():
            files.update(p.relative_to(base).as_posix() for p in base.rglob("*")
                         if p.is_file() and not p.name.startswith((".", "put_")))
    return sorted(files)


def model_path(root, folder, name):
    for sub in FOLDERS.get(folder, (folder,)):
        path = Path(root) / "models" / sub / name
        if path.is_file():
            return path
    return None


def resolved_spec(root, class_type):
    """The node's INPUT_TYPES with folder combos filled in (what /object_info shows)."""
    spec = SPECS[class_type]
    out = {}
    for section in ("required", "optional"):
        items = {}
        for name, info in spec.get(section, {}).items():
            kind = info[0]
            if isinstance(kind, FOLDER):
                kind = filename_list(root, kind.name)
            items[name] = [kind, *info[1:]]
        if items or section == "required":
            out[section] = items
    return out


def object_info(root, class_type):
    spec = SPECS[class_type]
    inputs = resolved_spec(root, class_type)
    outputs = list(spec["RETURN_TYPES"])
    return {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()}, "output": outputs,
            "output_is_list": [False] * len(outputs), "output_name": outputs, "name": class_type,
            "display_name": class_type, "description": "", "python_module": "nodes", "category": spec["CATEGORY"],
            "output_node": bool(spec.get("OUTPUT_NODE")), "deprecated": False, "experimental": False}


def _error(kind, message, details, extra=None):
    return {"type": kind, "message": message, "details": details, "extra_info": extra or {}}


def validate_prompt(root, prompt, known):
    """(ok, error, good_outputs, node_errors) like upstream's validate_prompt."""
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return False, _error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                 f"Node ID '#{node_id}'"), [], {}
        class_type = node["class_type"]
        if class_type not in known:
            return False, _error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                                 f"Node ID '#{node_id}'"), [], {}
        if SPECS.get(class_type, {}).get("OUTPUT_NODE"):
            outputs.append(node_id)
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    validated, node_errors, good, failed = {}, {}, [], []
    for out in outputs:
        valid, reasons = _validate_inputs(root, prompt, out, validated)
        if valid:
            good.append(out)
            continue
        failed.append((out, reasons))
        for node_id, (ok, errs) in validated.items():
            if not ok and errs:
                entry = node_errors.setdefault(node_id, {"errors": errs, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(out)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        return False, _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), [], \
            node_errors
    return True, None, good, node_errors


def _validate_inputs(root, prompt, node_id, validated):
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    class_type = node["class_type"]
    inputs = node.get("inputs", {})
    required = resolved_spec(root, class_type).get("required", {}) if class_type in SPECS else {}
    errors, valid = [], True
    for name, info in required.items():
        kind = info[0]
        if name not in inputs:
            errors.append(_error("required_input_missing", "Required input is missing", name, {"input_name": name}))
            continue
        value = inputs[name]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, "
                                     "slot_index]", name, {"input_name": name, "input_config": info,
                                                           "received_value": value}))
                continue
            source = prompt.get(value[0])
            returns = SPECS.get(source["class_type"], {}).get("RETURN_TYPES", ()) if source else ()
            got = returns[value[1]] if isinstance(value[1], int) and value[1] < len(returns) else None
            if got != kind:
                errors.append(_error("return_type_mismatch", "Return type mismatch between linked nodes",
                                     f"{name}, received_type({got}) mismatch input_type({kind})",
                                     {"input_name": name, "input_config": info, "received_type": got,
                                      "linked_node": value}))
                continue
            ok, _ = _validate_inputs(root, prompt, value[0], validated)
            valid = valid and ok
            continue
        try:
            if kind == "INT":
                value = int(value)
            elif kind == "FLOAT":
                value = float(value)
            elif kind == "STRING":
                value = str(value)
        except (TypeError, ValueError) as exc:
            errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                                 f"{name}, {value}, {exc}", {"input_name": name, "input_config": info,
                                                              "received_value": value, "exception_message": str(exc)}))
            continue
        limits = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
        if "min" in limits and value < limits["min"]:
            errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min of {limits['min']}",
                                 name, {"input_name": name, "input_config": info, "received_value": value}))
            continue
        if "max" in limits and value > limits["max"]:
            errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max of {limits['max']}",
                                 name, {"input_name": name, "input_config": info, "received_value": value}))
            continue
        if isinstance(kind, list) and value not in kind:
            listed = f"(list of length {len(kind)})" if len(kind) > 20 else str(kind)
            errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                                 {"input_name": name, "input_config": None if len(kind) > 20 else info,
                                  "received_value": value}))
    result = (not errors and valid, errors)
    validated[node_id] = result
    return result


# --- running a validated prompt ----------------------------------------------------------------------------------

def _follow(prompt, link):
    return prompt[link[0]] if isinstance(link, list) else None


class NodeFailure(Exception):
    """An exception inside one node (ComfyUI reports the node that raised, not the output)."""

    def __init__(self, node_id, message):
        super().__init__(message)
        self.node_id = node_id


def _model_chain(root, prompt, link):
    """What the MODEL reaching the sampler is: the diffusion model and the LoRAs applied on the way."""
    loras, base = [], None
    node = _follow(prompt, link)
    while node is not None:
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "LoraLoaderModelOnly":
            path = model_path(root, "loras", inputs["lora_name"])
            try:
                _check_safetensors(path)
            except RuntimeError as exc:
                raise NodeFailure(link[0], str(exc)) from None
            loras.append((hashlib.sha256(path.read_bytes()).hexdigest(), float(inputs["strength_model"])))
        elif kind == "UNETLoader":
            base = inputs["unet_name"]
        link = inputs.get("model")
        node = _follow(prompt, link)
    return base, loras[::-1]


def _check_safetensors(path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            f.keys()
    except Exception as exc:  # ComfyUI's load_torch_file raises on a file that is not safetensors
        raise RuntimeError(f"Error while deserializing header: {exc}") from None


def describe(root, prompt, output_id):
    """Everything the picture of one output node depends on."""
    save = prompt[output_id]
    decode = _follow(prompt, save["inputs"]["images"])
    sampler = _follow(prompt, decode["inputs"]["samples"])
    s = sampler["inputs"]
    latent = _follow(prompt, s["latent_image"])["inputs"]
    base, loras = _model_chain(root, prompt, s["model"])
    return {"text": _follow(prompt, s["positive"])["inputs"]["text"], "seed": int(s["seed"]), "base": base,
            "loras": loras, "width": int(latent["width"]), "height": int(latent["height"]),
            "length": int(latent["length"])}


def _frames(what):
    """Deterministic frames: a background and shapes from (prompt, seed), a figure from each applied LoRA."""
    from PIL import Image, ImageDraw

    def ints(key, n):
        digest = hashlib.sha256(key.encode()).digest()
        return list(digest[:n])

    w, h = what["width"], what["height"]
    bg = ints(f"{what['text']}|{what['seed']}", 16)
    frames = []
    for f in range(what["length"]):
        img = Image.new("RGB", (w, h), tuple(bg[:3]))
        draw = ImageDraw.Draw(img)
        for i in range(3):
            x, y = bg[3 + i * 4] * w // 256, bg[4 + i * 4] * h // 256
            size = (bg[5 + i * 4] % 64 + 16) * min(w, h) // 256
            color = tuple(255 - c for c in bg[i: i + 3])
            draw.rectangle([x + f, y, x + f + size, y + size], fill=color)
        for lora_hash, strength in what["loras"]:
            c = ints(f"{lora_hash}|{strength:g}", 6)
            r = int(min(w, h) * 0.3 * max(0.2, min(abs(strength), 2.0)))
            cx, cy = w // 2 + (c[3] - 128) * w // 1024 + f, h // 2 + (c[4] - 128) * h // 1024
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(c[:3]), outline=(255, 255, 255), width=3)
        frames.append(img)
    return frames


def _save_path(out_dir, prefix, ext):
    """folder_paths.get_save_image_path: <subfolder>/<name>_<counter:05>_.<ext>, counter after the highest there."""
    subfolder = os.path.dirname(os.path.normpath(prefix))
    name = os.path.basename(os.path.normpath(prefix))
    folder = Path(out_dir) / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    counters = []
    for p in folder.glob(f"{name}_*_.*"):
        digits = p.name[len(name) + 1:].split("_", 1)[0]
        if digits.isdigit():
            counters.append(int(digits))
    counter = max(counters, default=0) + 1
    return folder / f"{name}_{counter:05}_.{ext}", subfolder


def run_output(root, out_dir, prompt, output_id):
    """Write the output node's file(s); returns its "ui" record for the history."""
    from PIL import PngImagePlugin

    node = prompt[output_id]
    what = describe(root, prompt, output_id)
    frames = _frames(what)
    prefix = node["inputs"].get("filename_prefix", "ComfyUI")
    if node["class_type"] == "SaveImage":
        results = []
        for frame in frames:
            path, subfolder = _save_path(out_dir, prefix, "png")
            info = PngImagePlugin.PngInfo()
            info.add_text("prompt", json.dumps(prompt))
            info.add_text("pistachio_standin", json.dumps({"seed": what["seed"], "loras": what["loras"]}))
            frame.save(path, pnginfo=info, compress_level=4)
            results.append({"filename": path.name, "subfolder": subfolder, "type": "output"})
        return {"images": results}
    path, subfolder = _save_path(out_dir, prefix, "webp")
    duration = int(1000.0 / float(node["inputs"].get("fps", 6.0)))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, lossless=False, quality=80)
    return {"images": [{"filename": path.name, "subfolder": subfolder, "type": "output"}],
            "animated": [len(frames) > 1]}


def execute(root, out_dir, prompt, outputs, seconds_per_frame=0.0):
    """(status_str, ui outputs, messages) of running the validated prompt."""
    started = int(time.time() * 1000)
    messages = [["execution_start", {"prompt_id": None, "timestamp": started}]]
    ui = {}
    for out in sorted(outputs):
        try:
            ui[out] = run_output(root, out_dir, prompt, out)
            time.sleep(seconds_per_frame * len(ui[out]["images"]))
        except Exception as exc:
            node = exc.node_id if isinstance(exc, NodeFailure) else out
            messages.append(["execution_error", {"node_id": node, "node_type": prompt[node]["class_type"],
                                                 "exception_message": str(exc),
                                                 "exception_type": type(exc).__name__, "traceback": [],
                                                 "timestamp": int(time.time() * 1000)}])
            return "error", ui, messages
    messages.append(["execution_success", {"prompt_id": None, "timestamp": int(time.time() * 1000)}])
    return "success", ui, messages
