"""Stand-in for tdrussell/diffusion-pipe `train.py` (Wan LoRA training), for the pistachio-infra sandbox.

Launched the real way: `deepspeed --num_gpus=1 train.py --deepspeed --config X [--resume_from_checkpoint [NAME]]`.
It reads the real training, dataset and eval-dataset TOMLs, refuses what DiffusionPipe refuses (with the same
exception types), and writes DiffusionPipe's output layout, but trains nothing: steps take
`trainer.seconds_per_step` seconds and the losses follow the scenario's curve. LoRA tensors have the real key
names and rank, with a scaled-down width (`trainer.lora_dim`) and block count (`trainer.lora_blocks`).

Behaviour knobs come from the JSON file named by $PISTACHIO_STANDIN_SCENARIO (section "trainer"); see
pistachio_infra/sandbox/standins/__init__.py for the keys and their defaults.
"""

import argparse
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "submodules" / "ComfyUI"))

# models/wan/attention.py@8f83dbf: flash-attn 3 if it imports, else flash-attn 2; neither is in requirements.txt
try:
    import flash_attn_interface  # noqa: F401
    FLASH_ATTN_3_AVAILABLE = True
except ModuleNotFoundError:
    FLASH_ATTN_3_AVAILABLE = False
try:
    import flash_attn  # noqa: F401
    FLASH_ATTN_2_AVAILABLE = True
except ModuleNotFoundError:
    FLASH_ATTN_2_AVAILABLE = False


def flash_attention():
    """Every Wan transformer forward (models/wan/model.py -> attention.py `flash_attention`): without flash-attn 3
    it asserts flash-attn 2, a bare AssertionError at the first eval or step, after loading and caching."""
    if not FLASH_ATTN_3_AVAILABLE:
        assert FLASH_ATTN_2_AVAILABLE

DTYPE_MAP = {
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8": "F8_E4M3",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
OPTIMIZERS = {"adamw", "adamw8bit", "adamw_optimi", "stableadamw", "sgd", "adamw8bitkahan", "offload", "automagic",
              "genericoptim"}
PYTORCH_OPTIMIZER_CLASSES = {"Prodigy", "CAME", "ADOPT", "Lion", "AdaBelief", "SOAP", "Muon", "ScheduleFreeAdamW"}
SKIPPED_SUFFIXES = {".txt", ".npz", ".json", ".parquet", ".bak", ".db"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".ogv"}
WAN_LORA_MODULES = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")
QUANTILES = [round(0.1 * i, 2) for i in range(1, 10)]

SCENARIO_DEFAULTS = {
    "seconds_per_step": 0.05,
    "seconds_per_eval": 0.02,
    "curve": "converge",  # converge | plateau | diverge | nan
    "min_at_fraction": 0.6,
    "start_loss": 0.14,
    "min_loss": 0.08,
    "noise": 0.01,
    "nan_at_fraction": 0.5,
    "lora_dim": 64,
    "lora_blocks": 2,
    "seed": 0,
    "seconds_per_cached_image": 0.0,
    "seconds_to_load_model": 0.0,
}


def load_scenario():
    knobs = dict(SCENARIO_DEFAULTS)
    path = os.environ.get("PISTACHIO_STANDIN_SCENARIO")
    if path and Path(path).is_file():
        knobs.update(json.loads(Path(path).read_text()).get("trainer", {}))
    return knobs


def parse_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", help="Path to TOML configuration file.")
    parser.add_argument("--local_rank", type=int, default=-1)
    parser.add_argument("--resume_from_checkpoint", nargs="?", const=True, default=None)
    parser.add_argument("--reset_dataloader", action="store_true")
    parser.add_argument("--reset_optimizer", action="store_true")
    parser.add_argument("--reset_optimizer_params", action="store_true")
    parser.add_argument("--regenerate_cache", action="store_true", default=None)
    parser.add_argument("--cache_only", action="store_true")
    parser.add_argument("--trust_cache", action="store_true")
    parser.add_argument("--i_know_what_i_am_doing", action="store_true")
    parser.add_argument("--master_port", type=int, default=29500)
    parser.add_argument("--dump_dataset", type=Path, default=None)
    parser.add_argument("--test_sample", action="store_true")
    # deepspeed.add_config_arguments
    parser.add_argument("--deepspeed", default=False, action="store_true")
    parser.add_argument("--deepspeed_config", default=None, type=str)
    return parser.parse_args(argv)


def set_config_defaults(config):
    assert (
        "save_every_n_epochs" in config or "save_every_n_steps" in config or "save_every_n_examples" in config
    ), "Must set one of save_every_n_epochs, save_every_n_steps, or save_every_n_examples"
    config.setdefault("pipeline_stages", 1)
    config.setdefault("activation_checkpointing", False)
    config.setdefault("warmup_steps", 0)
    if "save_dtype" in config:
        config["save_dtype"] = DTYPE_MAP[config["save_dtype"]]
    model = config["model"]
    model_dtype_str = model["dtype"]
    model["dtype"] = DTYPE_MAP[model_dtype_str]
    if "transformer_dtype" in model:
        model["transformer_dtype"] = DTYPE_MAP[model["transformer_dtype"]]
    model.setdefault("guidance", 1.0)
    if "adapter" in config:
        adapter = config["adapter"]
        adapter_type = adapter["type"]
        if "alpha" in adapter:
            raise NotImplementedError(
                "This script forces alpha=rank to make the saved LoRA format simpler and more predictable with "
                "downstream tools. Don't set alpha in the config."
            )
        if adapter_type == "lora":
            adapter.setdefault("dropout", 0.0)
        elif adapter_type == "lokr":
            adapter.setdefault("decompose_factor", -1)
            adapter.setdefault("rank_dropout", 0.0)
        else:
            raise NotImplementedError(f"Adapter type {adapter_type} is not implemented")
        adapter["rank"] = int(adapter["rank"])
        adapter["dtype"] = DTYPE_MAP[adapter.get("dtype", model_dtype_str)]
    config.setdefault("logging_steps", 1)
    config.setdefault("eval_datasets", [])
    config.setdefault("eval_gradient_accumulation_steps", 1)
    config.setdefault("eval_every_n_steps", None)
    config.setdefault("eval_every_n_epochs", None)
    config.setdefault("eval_every_n_examples", None)
    config.setdefault("eval_before_first_step", True)
    config.setdefault("compile", False)
    config.setdefault("x_axis_examples", False)


def micro_batch(value):
    if isinstance(value, list):  # [[resolution, batch size], ...]
        return int(value[0][1])
    return int(value)


T5_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "spiece.model")


def load_t5_tokenizer(folder):
    """models/wan/tokenizers.py@8f83dbf: AutoTokenizer.from_pretrained(<ckpt>/google/umt5-xxl) — transformers reads
    tokenizer_config.json (the class), special_tokens_map.json (pad/eos/unk), tokenizer.json (the fast tokenizer)
    and spiece.model (the SentencePiece model T5Tokenizer is built from); any missing or unreadable: it fails."""
    hint = (f"Can't load tokenizer for '{folder}'. If you were trying to load it from 'https://huggingface.co/models', "
            "make sure you don't have a local directory with the same name. Otherwise, make sure "
            f"'{folder}' is the correct path to a directory containing all relevant files for a T5TokenizerFast "
            "tokenizer.")
    for name in T5_TOKENIZER_FILES:
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            raise OSError(hint)
        if name.endswith(".json"):
            try:
                json.loads(path.read_text())
            except ValueError as e:
                raise OSError(f"{hint} ({name}: {e})") from e
    print(f"Loaded T5 tokenizer from {folder}")


def load_wan(model):
    if model["type"] != "wan":
        raise NotImplementedError(f"Model type {model['type']} is not implemented (sandbox stand-in: wan only)")
    ckpt_dir = Path(model["ckpt_path"])
    with open(ckpt_dir / "config.json") as f:
        wan_config = json.load(f)
    for needed in ("Wan2.1_VAE.pth",):
        if not (ckpt_dir / needed).is_file():
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{ckpt_dir / needed}'")
    load_t5_tokenizer(ckpt_dir / "google" / "umt5-xxl")
    if "llm_path" in model:
        if not Path(model["llm_path"]).exists():
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{model['llm_path']}'")
    elif not (ckpt_dir / "models_t5_umt5-xxl-enc-bf16.pth").is_file():
        t5 = ckpt_dir / "models_t5_umt5-xxl-enc-bf16.pth"
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{t5}'")
    return wan_config


def load_diffusion_model(model, knobs):
    """model.load_diffusion_model(): the transformer (Wan 14B: ~28 GB read in bf16, then cast), after caching."""
    ckpt_dir = Path(model["ckpt_path"])
    time.sleep(float(knobs["seconds_to_load_model"]))
    if "transformer_path" in model:
        path = Path(model["transformer_path"])
        if not path.exists():
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")
        if "fp8_scaled" in path.name:
            raise ValueError("fp8_scaled models are not supported")
    elif not list(ckpt_dir.glob("diffusion_pytorch_model*.safetensors")):
        raise FileNotFoundError(f"No diffusion_pytorch_model*.safetensors found in {ckpt_dir}")


ROUND_DECIMAL_DIGITS = 3  # utils/dataset.py
PIXELS_ROUND_TO = 16  # models/base.py pixels_round_to_multiple (Wan 2.1 T2V keeps the default)


def log_warning(message):
    # deepspeed's logger (utils/dataset.py uses deepspeed.utils.logging.logger)
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    print(f"[{stamp}] [WARNING] [dataset.py] {message}", flush=True)


def round_to_multiple(x):  # utils/common.py round_to_nearest_multiple
    return int(round(x / PIXELS_ROUND_TO) * PIXELS_ROUND_TO)


def dedup_and_sort(values):
    return sorted({round(float(v), ROUND_DECIMAL_DIGITS) for v in values})


def directory_setting(directory, top, key, default=None):
    return directory.get(key, top.get(key, default))


def aspect_ratios(directory, top):
    """DirectoryDataset.__init__ (utils/dataset.py@8f83dbf): [1.0] without enable_ar_bucket, the user's ar_buckets
    (a [w, h] pair is w/h), else np.geomspace(min_ar, max_ar, num_ar_buckets); rounded to 3 places, sorted."""
    import numpy as np

    if not directory_setting(directory, top, "enable_ar_bucket", False):
        ars = [1.0]
    elif given := directory_setting(directory, top, "ar_buckets"):
        ars = [a[0] / a[1] if isinstance(a, (list, tuple)) else a for a in given]
    else:
        ars = np.geomspace(directory_setting(directory, top, "min_ar"), directory_setting(directory, top, "max_ar"),
                           num=directory_setting(directory, top, "num_ar_buckets"))
    return dedup_and_sort(ars)


def size_buckets_of_directory(directory, top, model_name):
    """{(ar, w, h, frames): [files] × num_repeats} for one [[directory]]: media files with captions, each in the
    aspect-ratio bucket nearest in log space (_find_closest_ar_bucket), one size bucket per resolution
    (ARBucketDataset.cache_latents: area = res², w = sqrt(area·ar), h = area/w, rounded to a multiple of 16)."""
    import numpy as np
    from PIL import Image

    path = Path(directory["path"])
    if not path.is_dir():
        raise RuntimeError(f"Invalid path: {path}")
    # the latent cache lives inside the dataset directory, so it must be writable
    cache_dir = path / "cache" / model_name
    cache_dir.mkdir(parents=True, exist_ok=True)
    skip_empty = directory_setting(directory, top, "skip_empty_caption", True)
    repeats = int(directory_setting(directory, top, "num_repeats", 1))
    if repeats <= 0:
        raise ValueError(f"num_repeats must be >0, was {repeats}")
    ars = aspect_ratios(directory, top)
    log_ars = np.log(ars)
    resolutions = dedup_and_sort(
        math.sqrt(r[0] * r[1]) if isinstance(r, (list, tuple)) else r
        for r in directory_setting(directory, top, "resolutions")
    )
    by_ar = {}
    for file in sorted(path.glob("*")):
        if not file.is_file() or file.suffix in SKIPPED_SUFFIXES:
            continue
        if not file.with_suffix(".txt").is_file():
            if skip_empty:
                log_warning(f"Cound not find caption for {file}. Skipping image.")
                continue
            log_warning(f"Cound not find caption for {file}. Using empty caption.")
        if file.suffix.lower() in VIDEO_SUFFIXES:
            raise NotImplementedError("sandbox stand-in: videos are not supported")
        try:
            with Image.open(file) as im:
                width, height = im.size
        except Exception as e:
            log_warning(f"Media file {file} could not be opened. Skipping. The exception was: {e}")
            continue
        ar = ars[int(np.argmin(np.abs(np.log(width / height) - log_ars)))]
        by_ar.setdefault(ar, []).append(file.name)
    (cache_dir / "metadata.json").write_text(json.dumps({"ar_buckets": {str(k): v for k, v in by_ar.items()}}))
    buckets = {}
    for ar, files in by_ar.items():
        for res in resolutions:
            w = math.sqrt(res * res * ar)
            h = res * res / w
            key = (ar, round_to_multiple(w), round_to_multiple(h), 1)
            buckets[key] = files * repeats
    return buckets


def cache_dataset(dataset_path, model_name, knobs):
    """The caching phase (train.py -> DatasetManager.cache, utils/dataset.py@8f83dbf), before the diffusion model
    loads and before the run folder exists: metadata, then latents per directory, aspect-ratio bucket and size
    bucket, then text embeddings, with upstream's lines. Returns (dataset config, {size bucket: examples})."""
    with open(dataset_path, "rb") as f:
        dataset = tomllib.load(f)
    resolutions = dataset.get("resolutions")
    if resolutions is None:
        raise KeyError("resolutions")
    if len(resolutions) > 3:
        raise RuntimeError("More than 3 resolutions set. Pass --i_know_what_i_am_doing if this is intended.")
    merged = {}
    for directory in dataset["directory"]:
        print("Grouped metadata is not cached. Computing ungrouped metadata and then grouping.")
        buckets = size_buckets_of_directory(directory, dataset, model_name)
        print(f"caching latents: {directory['path']}")
        for ar in sorted({key[0] for key in buckets}):
            print(f"caching latents: ({ar}, 1)")
            for key in (k for k in buckets if k[0] == ar):
                print(f"caching latents: {key}")
                time.sleep(float(knobs["seconds_per_cached_image"]) * len(set(buckets[key])))
                print("Building iteration order")
        print(f"caching text embeddings: {directory['path']}")
        for key, items in buckets.items():
            merged.setdefault(key, []).extend(items)
    return dataset, merged


def batch_dataset(dataset, merged, global_batch):
    """Dataset.post_init + ConcatenatedBatchedDataset (utils/dataset.py@8f83dbf), after the run folder exists: the
    same size bucket of every directory is concatenated, then cut to a multiple of the global batch; a bucket cut to
    nothing is dropped with a warning; nothing left raises in PipelineDataLoader. Returns (batches per epoch,
    {size bucket: examples kept})."""
    kept = {}
    for key, items in merged.items():
        kept[key] = len(items) // global_batch * global_batch
        if kept[key] == 0:
            log_warning(f"size bucket {key} is being completely dropped because it doesn't have enough images")
    batches = sum(n // global_batch for n in kept.values())
    if batches == 0:
        raise RuntimeError(
            "Processed dataset was empty. Probably caused by rounding down for each size bucket.\n"
            "Try decreasing the global batch size, or increasing num_repeats.\n"
            f"The dataset config that triggered this error was:\n{dataset}"
        )
    return batches, kept


def load_dataset(dataset_path, model_name, global_batch, knobs=None):
    """Both phases at once (for callers that do not need the run folder in between)."""
    return batch_dataset(*cache_dataset(dataset_path, model_name, knobs or SCENARIO_DEFAULTS), global_batch)


class Curve:
    def __init__(self, knobs, total_steps):
        self.k = knobs
        self.total = max(1, total_steps)

    def _noise(self, tag, step, value):
        rng = random.Random(f"{self.k['seed']}:{tag}:{step}")
        return value * (1 + rng.gauss(0, 1) * float(self.k["noise"]))

    def eval_loss(self, step):
        k = self.k
        p = step / self.total
        if k["curve"] == "nan" and p >= float(k["nan_at_fraction"]):
            return float("nan")
        start, low, m = float(k["start_loss"]), float(k["min_loss"]), float(k["min_at_fraction"])
        span = start - low
        if k["curve"] == "diverge":
            value = start + span * p
        elif p <= m:
            value = low + span * ((m - p) / m) ** 2
        elif k["curve"] == "plateau":
            value = low
        else:  # converge: falls, bottoms at min_at_fraction, rises (overfitting)
            value = low + 0.6 * span * ((p - m) / max(1e-9, 1 - m)) ** 2
        return self._noise("eval", step, value)

    def train_loss(self, step):
        k = self.k
        p = step / self.total
        if k["curve"] == "nan" and p >= float(k["nan_at_fraction"]):
            return float("nan")
        start, low = float(k["start_loss"]), float(k["min_loss"])
        if k["curve"] == "diverge":
            value = start + 0.2 * (start - low) * p
        else:
            value = low * 0.8 + (start - low) * math.exp(-3 * p)
        return self._noise("train", step, value)


class Events:
    """TensorBoard scalars, written with tensorboard's own event-file writer (what SummaryWriter uses)."""

    def __init__(self, run_dir):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.writer = EventFileWriter(str(run_dir))

    def scalar(self, tag, value, step):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self):
        self.writer.close()


def to_dtype_bytes(array, dtype):
    import numpy as np

    if dtype == "BF16":
        return (np.ascontiguousarray(array, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16), "bfloat16"
    if dtype == "F16":
        return array.astype(np.float16), "float16"
    return array.astype(np.float32), "float32"


def save_lora(folder, tensors, dtype, metadata):
    """adapter_model.safetensors in ComfyUI key format; bf16 written through safetensors' own serializer."""
    import safetensors
    from safetensors.numpy import save_file

    converted = {name: to_dtype_bytes(array, dtype) for name, array in tensors.items()}
    if all(kind != "bfloat16" for _, kind in converted.values()) or not hasattr(safetensors, "TensorSpec"):
        save_file({n: a.astype("float16") if k == "bfloat16" else a for n, (a, k) in converted.items()},
                  str(folder / "adapter_model.safetensors"), metadata=metadata)
        return
    specs = {
        name: safetensors.TensorSpec(dtype=kind, shape=list(array.shape), data_ptr=array.ctypes.data,
                                     data_len=array.nbytes)
        for name, (array, kind) in converted.items()
    }
    safetensors.serialize_file(specs, str(folder / "adapter_model.safetensors"), metadata=metadata)


class Trainer:
    def __init__(self, args, config, config_path, knobs):
        self.args, self.config, self.config_path, self.k = args, config, Path(config_path), knobs
        self.adapter = config.get("adapter")

    def lora_tensors(self, step):
        import numpy as np

        rank = self.adapter["rank"]
        dim = int(self.k["lora_dim"])
        blocks = min(int(self.k["lora_blocks"]), self.num_layers)
        rng = np.random.default_rng(int(self.k["seed"]) + step)
        tensors = {}
        for block in range(blocks):
            for module in WAN_LORA_MODULES:
                key = f"diffusion_model.blocks.{block}.{module}"
                tensors[f"{key}.lora_A.weight"] = rng.standard_normal((rank, dim), dtype=np.float32) * 0.01
                tensors[f"{key}.lora_B.weight"] = rng.standard_normal((dim, rank), dtype=np.float32) * 1e-3 * step
        return tensors

    def save_model(self, name, step):
        print(f"Saving model to directory {name}")
        folder = self.run_dir / name
        tmp = folder / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        dtype = self.config.get("save_dtype", self.adapter["dtype"])
        save_lora(folder, self.lora_tensors(step), dtype, {"format": "pt"})
        rank = self.adapter["rank"]
        blocks = min(int(self.k["lora_blocks"]), self.num_layers)
        adapter_config = {
            "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": None, "bias": "none",
            "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
            "layers_to_transform": None, "lora_alpha": rank, "lora_dropout": self.adapter.get("dropout", 0.0),
            "modules_to_save": None, "peft_type": "LORA", "r": rank, "rank_pattern": {}, "revision": None,
            "target_modules": sorted({f"blocks.{b}.{m}" for b in range(blocks) for m in WAN_LORA_MODULES}),
            "task_type": None, "use_dora": False, "use_rslora": False,
        }
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
        shutil.copy(self.config_path, folder)
        shutil.rmtree(tmp)
        return step

    def save_checkpoint(self, step, epoch, examples):
        tag = f"global_step{step}"
        folder = self.run_dir / tag
        folder.mkdir(parents=True, exist_ok=True)
        state = {"step": step, "epoch": epoch, "examples": examples, "stand_in": "pistachio-infra sandbox"}
        (folder / "mp_rank_00_model_states.pt").write_text(json.dumps(state))
        (folder / "layer_00-model_states.pt").write_text(json.dumps({"lora_rank": self.adapter["rank"]}))
        (self.run_dir / "latest").write_text(tag)
        return step

    def evaluate(self, x):
        start = time.time()
        flash_attention()
        step = x if not self.config["x_axis_examples"] else self.step
        for name in self.eval_names:
            loss = self.curve.eval_loss(step)
            for q in QUANTILES:
                self.events.scalar(f"{name}/loss_quantile_{q:.2f}", loss * (1 + 0.6 * (0.5 - q)), x)
            self.events.scalar(f"{name}/loss", loss, x)
        time.sleep(float(self.k["seconds_per_eval"]) * len(self.eval_names))
        self.events.scalar("eval/eval_time_sec", time.time() - start, x)

    def setup_wandb(self):
        monitoring = self.config.get("monitoring", {})
        if not monitoring.get("enable_wandb", False):
            return
        api_key = monitoring["wandb_api_key"]
        project = monitoring["wandb_tracker_name"]
        run_name = monitoring["wandb_run_name"]
        if not (api_key or os.environ.get("WANDB_API_KEY")):
            raise RuntimeError("api_key not configured (no-tty). call wandb.login(key=[your_api_key])")
        run_id = uuid.uuid4().hex[:8]
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        files = self.run_dir / "wandb" / f"run-{stamp}-{run_id}" / "files"
        files.mkdir(parents=True, exist_ok=True)
        # like wandb.init(config=config): the whole config, including whatever key the TOML held
        (files / "config.yaml").write_text(json.dumps(self.config, indent=1))
        print("wandb: Tracking run with wandb version 0.19.11")
        print(f"wandb: Run data is saved locally in {files.parent}")
        print(f"wandb: 🚀 View run {run_name} at: https://wandb.ai/sandbox/{project}/runs/{run_id}", flush=True)

    def run(self):
        args, config = self.args, self.config
        model = config["model"]
        wan_config = load_wan(model)
        self.num_layers = int(wan_config.get("num_layers", 40))
        blocks_to_swap = int(config.get("blocks_to_swap", 0))
        if blocks_to_swap > 0:
            assert config["pipeline_stages"] == 1, "Block swapping only works with pipeline_stages=1"
            assert "adapter" in config, "Block swap only works with LoRA training"
            assert blocks_to_swap <= self.num_layers - 2, f"Cannot swap more than {self.num_layers - 2} blocks"

        mbs = micro_batch(config.get("micro_batch_size_per_gpu", 1))
        gas = int(config.get("gradient_accumulation_steps", 1))
        gbs = mbs * gas
        # train.py order: datasets read and cached (latents, text embeddings), then the diffusion model loads, then
        # the run folder; deepspeed.initialize ("Global batch size"); then the batching (dropped buckets, empty)
        train_cache = cache_dataset(config["dataset"], "wan", self.k)
        eval_caches = []
        for i, eval_dataset in enumerate(config["eval_datasets"]):
            if isinstance(eval_dataset, str):
                name, path = f"eval{i}", eval_dataset
            else:
                name, path = eval_dataset["name"], eval_dataset["config"]
            eval_caches.append((name, cache_dataset(path, "wan", self.k)))
        if args.cache_only:
            return 0
        load_diffusion_model(model, self.k)

        resume = args.resume_from_checkpoint if args.resume_from_checkpoint is not None else config.get(
            "resume_from_checkpoint"
        )
        output_dir = Path(config["output_dir"])
        if resume:
            if resume is True:
                self.run_dir = sorted(output_dir.glob("*"))[-1]
            else:
                self.run_dir = output_dir / resume
        else:
            self.run_dir = output_dir / datetime.now(UTC).strftime("%Y%m%d_%H-%M-%S")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.config_path, self.run_dir)
            shutil.copy(config["dataset"], self.run_dir)
            for eval_dataset in config["eval_datasets"]:
                shutil.copy(eval_dataset["config"], self.run_dir)

        self.setup_wandb()
        print(f"Global batch size = {gbs}")
        if "save_every_n_examples" in config:
            config["save_every_n_steps"] = int(config["save_every_n_examples"]) // gbs
        if config["eval_every_n_examples"]:
            config["eval_every_n_steps"] = int(config["eval_every_n_examples"]) // gbs
        # one-frame buckets use the image micro batch (train.py: image_micro_batch_size_per_gpu, default: micro)
        image_gbs = micro_batch(config.get("image_micro_batch_size_per_gpu", config.get("micro_batch_size_per_gpu", 1)))
        steps_per_epoch, _ = batch_dataset(*train_cache, image_gbs * gas)
        eval_gbs = micro_batch(config.get("eval_micro_batch_size_per_gpu", config.get("micro_batch_size_per_gpu", 1)))
        eval_gbs *= int(config["eval_gradient_accumulation_steps"])
        eval_sets = [(name, batch_dataset(*cached, eval_gbs)[0]) for name, cached in eval_caches]
        epochs = int(config["epochs"])
        max_steps = config.get("max_steps")
        total_steps = epochs * steps_per_epoch if max_steps is None else min(int(max_steps), epochs * steps_per_epoch)
        if blocks_to_swap > 0:
            print(f"Block swap enabled. Swapping {blocks_to_swap} blocks out of {self.num_layers} blocks.")

        self.eval_names = [name for name, _ in eval_sets]
        self.curve = Curve(self.k, total_steps)
        step, epoch = 0, 1
        if resume:
            latest = self.run_dir / "latest"
            if not latest.is_file():
                raise ValueError(f"Unable to find latest file at {latest}, if trying to load latest checkpoint "
                                 "please ensure you have a latest file")
            state = json.loads((self.run_dir / latest.read_text().strip() / "mp_rank_00_model_states.pt").read_text())
            step, epoch = int(state["step"]), int(state["epoch"])
            if step and step % steps_per_epoch == 0:
                epoch += 1  # the checkpoint was taken right at an epoch end
            # upstream prints the step it is about to run: client_state['step'] + 1
            print(f"Resuming training from checkpoint. Resuming at epoch: {epoch}, step: {step + 1}")
        self.events = Events(self.run_dir)
        self.step = step

        def on_sigterm(signum, frame):
            self.events.close()
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, on_sigterm)
        if eval_sets and config["eval_before_first_step"] and not resume:
            self.evaluate(0)

        save_every_epochs = config.get("save_every_n_epochs")
        save_every_steps = config.get("save_every_n_steps")
        eval_every_epochs, eval_every_steps = config["eval_every_n_epochs"], config["eval_every_n_steps"]
        ckpt_minutes = config.get("checkpoint_every_n_minutes")
        ckpt_epochs = config.get("checkpoint_every_n_epochs")
        last_ckpt_time = None  # utils/saver.py: the minutes clock starts at the first step's check
        steps_per_print = int(config.get("steps_per_print", 1))
        epoch_losses = []
        checkpointed = saved = False
        final_name = None
        # The loop follows upstream train.py@8f83dbf: step, process_epoch (epoch-end checkpoint/save, "Started new
        # epoch"), train/loss, eval, epoch_loss — and at the end of the last epoch it stops there, before
        # process_step, so the final save is `epoch{E}` — then process_step (signal files, stepN, minutes checkpoint),
        # then max_steps. After the loop: the checkpoint and the model, unless that iteration just saved them.
        finished = epoch > epochs or (max_steps is not None and step >= int(max_steps))
        while not finished:
            t0 = time.time()
            flash_attention()
            time.sleep(float(self.k["seconds_per_step"]))
            step += 1
            self.step = step
            loss = self.curve.train_loss(step)
            epoch_losses.append(loss)
            x = step * gbs if config["x_axis_examples"] else step
            iter_time = time.time() - t0
            if step % steps_per_print == 0:
                print(f"steps: {step} loss: {loss:.4f} iter time (s): {iter_time:.3f} "
                      f"samples/sec: {gbs / max(iter_time, 1e-6):.3f}", flush=True)
            # saver.process_epoch
            checkpointed = saved = False
            finished_epoch = step % steps_per_epoch == 0
            new_epoch = epoch
            if finished_epoch:
                if ckpt_epochs and epoch % int(ckpt_epochs) == 0:
                    self.save_checkpoint(step, epoch, step * gbs)
                    last_ckpt_time = time.time()
                    checkpointed = True
                if save_every_epochs and epoch % int(save_every_epochs) == 0:
                    self.save_model(f"epoch{epoch}", step)
                    saved = True
                new_epoch = epoch + 1 if epoch + 1 <= epochs else None
                if new_epoch is not None:
                    print(f"Started new epoch: {new_epoch}")
            if step % int(config["logging_steps"]) == 0:
                self.events.scalar("train/loss", loss, x)
            if eval_sets and ((eval_every_steps and step % int(eval_every_steps) == 0) or (
                    finished_epoch and eval_every_epochs and epoch % int(eval_every_epochs) == 0)):
                self.evaluate(x)
            if finished_epoch:
                self.events.scalar("train/epoch_loss", sum(epoch_losses) / len(epoch_losses), epoch)
                epoch_losses = []
                if new_epoch is None:
                    final_name = f"epoch{epoch}"
                    break
                epoch = new_epoch
            # saver.process_step
            checkpointed = saved = False
            quit_now = False
            if (self.run_dir / "save").is_file():
                want_manual = True
                (self.run_dir / "save").unlink()
            elif (self.run_dir / "save_quit").is_file():
                want_manual = quit_now = True
                (self.run_dir / "save_quit").unlink()
            else:
                want_manual = False
            if save_every_steps and step % int(save_every_steps) == 0:
                self.save_model(f"step{step}", step)
                saved = True
            want_minutes = False
            if ckpt_minutes is not None:
                if last_ckpt_time is None:
                    last_ckpt_time = time.time()
                elif (time.time() - last_ckpt_time) / 60 > float(ckpt_minutes):
                    want_minutes, last_ckpt_time = True, time.time()
            if want_minutes or want_manual:
                self.save_checkpoint(step, epoch, step * gbs)
                checkpointed = True
            if quit_now:
                print("Manually quitting")
                self.events.close()
                return 0
            if max_steps is not None and step >= int(max_steps):
                final_name = f"step{step}"
                break
        if not finished and not checkpointed:
            self.save_checkpoint(step, epoch, step * gbs)
        if not finished and not saved:
            self.save_model(final_name, step)
        self.events.close()
        print("TRAINING COMPLETE!", flush=True)
        return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.local_rank < 0 and "LOCAL_RANK" not in os.environ:
        raise ValueError(
            "Error initializing torch.distributed using env:// rendezvous: environment variable RANK expected, but "
            "not set (launch with `deepspeed --num_gpus=1 train.py --deepspeed --config ...`)"
        )
    import comfy  # noqa: F401  (submodules/ComfyUI, needed for every model)

    with open(args.config, "rb") as f:
        config = json.loads(json.dumps(tomllib.load(f)))
    config["output_dir"], config["dataset"]  # required keys: KeyError like the real script
    set_config_defaults(config)
    optimizer_type = config["optimizer"]["type"]
    if optimizer_type.lower() not in OPTIMIZERS and optimizer_type not in PYTORCH_OPTIMIZER_CLASSES:
        raise AttributeError(f"module 'pytorch_optimizer' has no attribute '{optimizer_type}'")
    return Trainer(args, config, args.config, load_scenario()).run()


if __name__ == "__main__":
    sys.exit(main())
