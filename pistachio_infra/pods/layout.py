"""Where things live in a pod's workspace. Every path rendered into a config file comes from here.

```
/workspace/                         (RunPod's volume mount; the sandbox may use another root)
  diffusion-pipe/                   pinned checkout (data/sources.toml)
  joy-caption-batch/                pinned checkout
  models/Wan2.1-T2V-14B/            base-model files (data/models.toml `dest`)
  hf-cache/                         HF_HOME for the captioner's model
  jobs/<job>/
    images/                         the uploaded images; JoyCaption writes <image>.txt next to each
    dataset/train/  dataset/eval/   the split copies DiffusionPipe reads (it writes cache/ inside them)
    config/                         rendered train.toml, dataset.toml, eval_dataset.toml, joycaption.toml
    output/                         DiffusionPipe's output_dir: <YYYYMMDD_HH-MM-SS>/stepN/adapter_model.safetensors
    logs/                           captioner and trainer logs
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

DEFAULT_ROOT = "/workspace"

TRAIN_TOML = "train.toml"
DATASET_TOML = "dataset.toml"
EVAL_DATASET_TOML = "eval_dataset.toml"
JOYCAPTION_TOML = "joycaption.toml"
EVAL_NAME = "eval"  # the eval dataset's name: TensorBoard tags are `eval/loss`, `eval/loss_quantile_0.10`, …


@dataclass(frozen=True)
class JobLayout:
    """One job's folders inside the workspace."""

    root: PurePosixPath  # jobs/<name>
    name: str

    @property
    def images_dir(self) -> PurePosixPath:
        return self.root / "images"

    @property
    def train_dir(self) -> PurePosixPath:
        return self.root / "dataset" / "train"

    @property
    def eval_dir(self) -> PurePosixPath:
        return self.root / "dataset" / "eval"

    @property
    def config_dir(self) -> PurePosixPath:
        return self.root / "config"

    @property
    def output_dir(self) -> PurePosixPath:
        return self.root / "output"

    @property
    def logs_dir(self) -> PurePosixPath:
        return self.root / "logs"

    @property
    def train_toml(self) -> PurePosixPath:
        return self.config_dir / TRAIN_TOML

    @property
    def dataset_toml(self) -> PurePosixPath:
        return self.config_dir / DATASET_TOML

    @property
    def eval_dataset_toml(self) -> PurePosixPath:
        return self.config_dir / EVAL_DATASET_TOML

    @property
    def joycaption_toml(self) -> PurePosixPath:
        return self.config_dir / JOYCAPTION_TOML

    @property
    def caption_filelist(self) -> PurePosixPath:
        """Images to caption when only some lack captions (joy-caption-batch `--filelist`)."""
        return self.config_dir / "caption-filelist.txt"


@dataclass(frozen=True)
class WorkspaceLayout:
    root: PurePosixPath | str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", PurePosixPath(self.root))

    @classmethod
    def at(cls, root: str | PurePosixPath | None = None) -> WorkspaceLayout:
        return cls(PurePosixPath(root or DEFAULT_ROOT))

    def _source_dest(self, name: str) -> PurePosixPath:
        from ..catalog import sources

        return self.root / sources().repos[name].dest

    @property
    def diffusion_pipe(self) -> PurePosixPath:
        return self._source_dest("diffusion-pipe")

    @property
    def joy_caption_batch(self) -> PurePosixPath:
        return self._source_dest("joy-caption-batch")

    @property
    def joycaption_script(self) -> PurePosixPath:
        return self.joy_caption_batch / "batch-alpha2.py"

    @property
    def models_dir(self) -> PurePosixPath:
        return self.root / "models"

    @property
    def hf_cache(self) -> PurePosixPath:
        return self.root / "hf-cache"

    def model_file(self, dest: str) -> PurePosixPath:
        """A base-model file's place: `dest` from data/models.toml is relative to the workspace."""
        return self.root / dest

    def model_ckpt_dir(self, base_model: str) -> PurePosixPath:
        from ..catalog import base_model as manifest

        ckpt = manifest(base_model).ckpt_dir
        if not ckpt:
            raise ValueError(f"base model {base_model!r} has no ckpt_dir: it is not a trainable model")
        return self.root / ckpt

    @property
    def jobs_dir(self) -> PurePosixPath:
        return self.root / "jobs"

    def job(self, name: str) -> JobLayout:
        return JobLayout(self.jobs_dir / name, name)
