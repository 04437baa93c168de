"""Every model file a workflow loads, the ComfyUI folder it belongs in, and where to download it from.

A model is found by its loader: the node type says which widget (UI format, by index) or input (API format, by
name) holds the file name and which `models/` folder ComfyUI looks in (LOADERS, core loaders and the common custom
ones). Nodes that carry `properties.models` ([{name, url, directory}], as ComfyUI's templates do) add their own.
The widget value is the path ComfyUI will look for under that folder (a Windows `\\` becomes `/`).

Sources, first found wins:
  1. the URL embedded in the workflow (properties.models);
  2. ComfyUI-Manager's model-list.json, by file name;
  3. the project's own manifests (pistachio_infra/data/models.toml), by file name;
  4. Hugging Face repos linked from the workflow's notes ("Models: https://huggingface.co/Kijai/WanVideo_comfy"),
     then a hub search: repos whose id matches words of the file name, holding a file of exactly that name;
     several candidates are offered with repo, path and size for the user to choose.
A Hugging Face URL (https://huggingface.co/REPO/resolve/REV/PATH) becomes a hub source, downloaded through the
configured hub endpoint, its size and sha256 read from the hub, and gated repos flagged with the HF_TOKEN fix.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..paths import data_dir
from .database import ManagerDatabase
from .workflow import Workflow, WorkflowNode

# node type -> ((input name, widget index, folder), ...)
LOADERS: dict[str, tuple[tuple[str, int, str], ...]] = {
    # core ComfyUI (nodes.py, comfy_extras/)
    "CheckpointLoaderSimple": (("ckpt_name", 0, "checkpoints"),),
    "CheckpointLoader": (("config_name", 0, "configs"), ("ckpt_name", 1, "checkpoints")),
    "ImageOnlyCheckpointLoader": (("ckpt_name", 0, "checkpoints"),),
    "unCLIPCheckpointLoader": (("ckpt_name", 0, "checkpoints"),),
    "VAELoader": (("vae_name", 0, "vae"),),
    "LoraLoader": (("lora_name", 0, "loras"),),
    "LoraLoaderModelOnly": (("lora_name", 0, "loras"),),
    "CLIPLoader": (("clip_name", 0, "text_encoders"),),
    "DualCLIPLoader": (("clip_name1", 0, "text_encoders"), ("clip_name2", 1, "text_encoders")),
    "TripleCLIPLoader": tuple((f"clip_name{i + 1}", i, "text_encoders") for i in range(3)),
    "QuadrupleCLIPLoader": tuple((f"clip_name{i + 1}", i, "text_encoders") for i in range(4)),
    "UNETLoader": (("unet_name", 0, "diffusion_models"),),
    "CLIPVisionLoader": (("clip_name", 0, "clip_vision"),),
    "ControlNetLoader": (("control_net_name", 0, "controlnet"),),
    "DiffControlNetLoader": (("control_net_name", 0, "controlnet"),),
    "UpscaleModelLoader": (("model_name", 0, "upscale_models"),),
    "LatentUpscaleModelLoader": (("model_name", 0, "latent_upscale_models"),),
    "StyleModelLoader": (("style_model_name", 0, "style_models"),),
    "GLIGENLoader": (("gligen_name", 0, "gligen"),),
    "HypernetworkLoader": (("hypernetwork_name", 0, "hypernetworks"),),
    "PhotoMakerLoader": (("photomaker_model_name", 0, "photomaker"),),
    "ModelPatchLoader": (("name", 0, "model_patches"),),
    "AudioEncoderLoader": (("audio_encoder_name", 0, "audio_encoders"),),
    "DiffusersLoader": (("model_path", 0, "diffusers"),),
    # common custom packs (their loaders' folder_paths lists)
    "WanVideoModelLoader": (("model", 0, "diffusion_models"),),
    "WanVideoVAELoader": (("model_name", 0, "vae"),),
    "LoadWanVideoT5TextEncoder": (("model_name", 0, "text_encoders"),),
    "LoadWanVideoClipTextEncoder": (("model_name", 0, "text_encoders"),),
    "WanVideoLoraSelect": (("lora", 0, "loras"),),
    # kijai/ComfyUI-WanVideoWrapper multitalk/nodes.py: "model" from folder_paths "diffusion_models"
    "MultiTalkModelLoader": (("model", 0, "diffusion_models"),),
    "UnetLoaderGGUF": (("unet_name", 0, "diffusion_models"),),
    "CLIPLoaderGGUF": (("clip_name", 0, "text_encoders"),),
    "DualCLIPLoaderGGUF": (("clip_name1", 0, "text_encoders"), ("clip_name2", 1, "text_encoders")),
    "LoraLoader|pysssss": (("lora_name", 0, "loras"),),
    "CheckpointLoader|pysssss": (("ckpt_name", 0, "checkpoints"),),
    "ADE_LoadAnimateDiffModel": (("model_name", 0, "animatediff_models"),),
    "IPAdapterModelLoader": (("ipadapter_file", 0, "ipadapter"),),
    "UltralyticsDetectorProvider": (("model_name", 0, "ultralytics"),),
    "SAMLoader": (("model_name", 0, "sams"),),
}
# Folders ComfyUI also searches for the same kind of model (folder_paths.py): a file in any of them is present.
FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
    "controlnet": ("controlnet", "t2i_adapter"),
}
# VAELoader's built-in choices are not files to download.
BUILTIN_NAMES = frozenset({"taesd", "taesdxl", "taesd3", "taef1", "pixel_space", "None", "none", ""})
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
# ComfyUI-Manager's model-list `type` -> folder, for entries whose save_path is "default"
MANAGER_TYPE_FOLDERS = {
    "checkpoint": "checkpoints",
    "checkpoints": "checkpoints",
    "lora": "loras",
    "vae": "vae",
    "VAE": "vae",
    "clip": "text_encoders",
    "text_encoders": "text_encoders",
    "unet": "diffusion_models",
    "diffusion_model": "diffusion_models",
    "upscale": "upscale_models",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "gligen": "gligen",
    "T2I-Adapter": "controlnet",
    "T2I-Style": "style_models",
    "TAESD": "vae_approx",
    "IP-Adapter": "ipadapter",
}


@dataclass
class ModelRef:
    name: str  # relative to the folder, '/'-separated, as ComfyUI will look it up
    folder: str | None  # None: a model-looking value on a node we do not know the folder of
    used_by: list[str] = field(default_factory=list)  # "#22 WanVideoModelLoader at nodes[13]"
    url: str | None = None  # embedded in the workflow
    sha256: str | None = None  # embedded in the workflow

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        return f"{self.folder or '?'}/{self.name}"


@dataclass
class HubFile:
    repo: str
    path: str
    revision: str = "main"
    size: int | None = None
    sha256: str | None = None
    downloads: int = 0

    @property
    def label(self) -> str:
        return f"{self.repo}/{self.path}" + (f"@{self.revision}" if self.revision != "main" else "")


@dataclass
class ModelSource:
    how: str  # workflow, model-list, manifest, hf-search, --choose
    url: str  # what the user can open; for hub files the huggingface.co URL
    hub: HubFile | None = None  # set when it downloads from a Hugging Face (or stand-in) hub
    size: int | None = None
    size_approx: bool = False  # from model-list's "6.74GB" text, not from the hub
    sha256: str | None = None
    gated: bool = False
    note: str = ""


@dataclass
class ModelResolution:
    ref: ModelRef
    source: ModelSource | None = None
    candidates: list[HubFile] = field(default_factory=list)  # several hub files fit: the user chooses
    problem: str = ""  # why it is unresolved


# -- finding the models in a workflow ------------------------------------------------------------------------------
def _clean(value: str) -> str:
    return value.replace("\\", "/").strip().lstrip("/")


def _widget(node: WorkflowNode, input_name: str, index: int) -> Any:
    if node.inputs or not node.widgets:
        return node.inputs.get(input_name)
    if isinstance(node.widgets, dict):
        return node.widgets.get(input_name)
    return node.widgets[index] if index < len(node.widgets) else None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def find_models(wf: Workflow) -> list[ModelRef]:
    refs: dict[str, ModelRef] = {}

    def add(name: str, folder: str | None, node: WorkflowNode, url: str | None = None, sha: str | None = None) -> None:
        name = _clean(name)
        if name in BUILTIN_NAMES:
            return
        if folder is None:  # an unknown node: fold into a known-folder ref of the same file if there is one
            same = [r for r in refs.values() if r.name == name or r.basename == name.rsplit("/", 1)[-1]]
            if same:
                same[0].used_by.append(f"#{node.id} {node.type} at {node.path}")
                return
        ref = refs.setdefault(f"{folder}/{name}", ModelRef(name=name, folder=folder))
        where = f"#{node.id} {node.type} at {node.path}"
        if where not in ref.used_by:
            ref.used_by.append(where)
        ref.url = ref.url or url
        ref.sha256 = ref.sha256 or sha

    unknown_nodes = []
    for node in wf.nodes:
        if node.virtual:
            continue
        embedded = {}
        for entry in node.properties.get("models") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                embedded[_clean(entry["name"])] = entry
        known = LOADERS.get(node.type)
        if known:
            taken = set()
            for input_name, index, folder in known:
                value = _widget(node, input_name, index)
                if isinstance(value, str) and value.strip():
                    taken.add(value)
                    entry = embedded.pop(_clean(value), {}) or embedded.pop(_clean(value).rsplit("/", 1)[-1], {})
                    add(value, folder, node, entry.get("url"), _sha(entry))
            # any other model-looking value (an input named differently in this version of the pack, an API
            # workflow's `t5_model`): the loader's folder when it has one, else unknown, never dropped
            folders = {folder for _, _, folder in known}
            only = next(iter(folders)) if len(folders) == 1 else None
            for value in _strings(node.inputs) + _strings(node.widgets):
                if value not in taken and _looks_like_model(value) and _clean(value) not in embedded:
                    add(value, only, node)
        for name, entry in embedded.items():
            folder = entry.get("directory") if isinstance(entry.get("directory"), str) else None
            add(name, folder, node, entry.get("url"), _sha(entry))
        if not known:
            unknown_nodes.append(node)
    # after every known loader, so that a value a subgraph instance promotes folds into its loader's reference
    for node in unknown_nodes:
        for value in _strings(node.inputs) + _strings(node.widgets):
            if _looks_like_model(value):
                add(value, None, node)
    return sorted(refs.values(), key=lambda r: (r.folder or "~", r.name.lower()))


def _looks_like_model(value: str) -> bool:
    return value.strip().lower().endswith(MODEL_SUFFIXES) and "\n" not in value and len(value) < 300


def _sha(entry: dict) -> str | None:
    value = entry.get("hash") if str(entry.get("hash_type", "sha256")).lower() == "sha256" else None
    return value.lower() if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value) else None


# -- sources --------------------------------------------------------------------------------------------------------
_HF_URL = re.compile(
    r"^https?://(?:www\.)?huggingface\.co/(?!datasets/|spaces/)([^/]+/[^/]+)/(?:resolve|blob)/([^/]+)/(.+)$"
)


def hub_file_from_url(url: str) -> HubFile | None:
    parts = urlsplit(url)
    match = _HF_URL.match(f"{parts.scheme}://{parts.netloc}{parts.path}")
    if not match:
        return None
    return HubFile(repo=match.group(1), revision=unquote(match.group(2)), path=unquote(match.group(3)))


_HF_REPO_IN_TEXT = re.compile(r"https?://(?:www\.)?huggingface\.co/(?!datasets/|spaces/)([\w.-]+/[\w.-]+)")


def repos_in_notes(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(m.group(1) for text in texts for m in _HF_REPO_IN_TEXT.finditer(text)))


def hub_url(f: HubFile) -> str:
    return f"https://huggingface.co/{f.repo}/resolve/{f.revision}/{f.path}"


_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str | None) -> int | None:
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?I?B)\s*", text or "", re.IGNORECASE)
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def manager_folder(entry: dict) -> str | None:
    save_path = entry.get("save_path") or "default"
    if save_path != "default":
        return save_path.split("/", 1)[0]
    return MANAGER_TYPE_FOLDERS.get(entry.get("type", ""))


def _model_list_source(ref: ModelRef, db: ManagerDatabase) -> ModelSource | None:
    hits = [m for m in db.model_list if m.get("filename") == ref.basename and m.get("url")]
    if ref.folder:
        hits = [m for m in hits if manager_folder(m) in (None, *FOLDER_ALIASES.get(ref.folder, (ref.folder,)))] or hits
    if not hits:
        return None
    entry = hits[0]
    return ModelSource(
        how="model-list",
        url=entry["url"],
        size=parse_size(entry.get("size")),
        size_approx=True,
        note=entry.get("name", ""),
    )


def _manifest_source(ref: ModelRef) -> ModelSource | None:
    with (data_dir() / "models.toml").open("rb") as fh:
        manifests = tomllib.load(fh).get("models", {})
    for manifest in manifests.values():
        for f in manifest.get("files", []):
            if f["path"].rsplit("/", 1)[-1] == ref.basename:
                hub = HubFile(repo=f["repo_id"], path=f["path"], revision=f.get("revision", "main"))
                return ModelSource(how="manifest", url=hub_url(hub), hub=hub)
    return None


class Hub:
    """The Hugging Face hub (or the sandbox's stand-in) as seen by huggingface_hub, with answers kept per run."""

    def __init__(self, endpoint: str, token: str | None) -> None:
        from huggingface_hub import HfApi

        self.api = HfApi(endpoint=endpoint, token=token or False)
        self.token = token
        self._gated: dict[str, bool | None] = {}
        self._trees: dict[tuple[str, str], list[HubFile]] = {}

    def describe(self, f: HubFile) -> tuple[HubFile, str]:
        """Fill size and sha256 from the hub; returns (file, problem) where problem is "" when all is well."""
        from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

        try:
            info = self.api.get_paths_info(f.repo, [f.path], revision=f.revision)
        except GatedRepoError:
            return f, "gated"
        except (RepositoryNotFoundError, EntryNotFoundError):
            return f, f"{f.label} does not exist on the hub"
        except Exception as exc:  # network down, hub 5xx: keep going without size
            return f, f"hub unreachable ({type(exc).__name__})"
        if not info or not hasattr(info[0], "size"):
            return f, f"{f.label} does not exist on the hub"
        entry = info[0]
        lfs = getattr(entry, "lfs", None)
        return HubFile(f.repo, f.path, f.revision, entry.size, lfs.sha256 if lfs else None, f.downloads), ""

    def gated(self, repo: str) -> bool | None:
        """True when the repo is gated and our token (if any) has no access; None when the hub cannot say."""
        if repo not in self._gated:
            from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

            try:
                self.api.auth_check(repo)
                self._gated[repo] = False
            except GatedRepoError:
                self._gated[repo] = True
            except RepositoryNotFoundError:
                self._gated[repo] = None
            except Exception:
                self._gated[repo] = None
        return self._gated[repo]

    def files(self, repo: str, revision: str = "main") -> list[HubFile]:
        if (repo, revision) not in self._trees:
            try:
                entries = self.api.list_repo_tree(repo, recursive=True, revision=revision)
                self._trees[repo, revision] = [
                    HubFile(repo, e.path, revision, e.size, e.lfs.sha256 if getattr(e, "lfs", None) else None)
                    for e in entries
                    if hasattr(e, "size")
                ]
            except Exception:
                self._trees[repo, revision] = []
        return self._trees[repo, revision]

    def search(self, basename: str, limit: int = 20) -> list[HubFile]:
        """Hub files named exactly `basename`, in repos whose id matches words of the name; most downloaded first."""
        stem = basename.rsplit(".", 1)[0]
        tokens = [t for t in re.split(r"[_\-.\s]+", stem) if t]
        queries = [stem, "-".join(tokens[:2]), *sorted((t for t in tokens if len(t) >= 4), key=len, reverse=True)]
        seen: set[str] = set()
        for query in dict.fromkeys(q for q in queries if len(q) >= 3):
            try:
                repos = list(self.api.list_models(search=query, sort="downloads", limit=limit))
            except Exception:
                return []
            found = []
            for info in repos:
                if info.id in seen:
                    continue
                seen.add(info.id)
                for f in self.files(info.id):
                    if f.path.rsplit("/", 1)[-1] == basename:
                        f.downloads = getattr(info, "downloads", 0) or 0
                        found.append(f)
            if found:
                return sorted(found, key=lambda f: (-f.downloads, f.repo, f.path))
        return []


Chooser = Callable[[ModelRef, list[HubFile]], HubFile | None]


def resolve_models(
    refs: list[ModelRef],
    db: ManagerDatabase,
    hub: Hub | None,
    *,
    choices: dict[str, str] | None = None,
    choose: Chooser | None = None,
    search: bool = True,
    hint_repos: list[str] | None = None,
) -> list[ModelResolution]:
    """A source for each model (see the module docstring for the order); `choose` picks among hub candidates."""
    choices = choices or {}
    out = []
    for ref in refs:
        res = ModelResolution(ref=ref)
        picked = choices.get(ref.name) or choices.get(ref.basename)
        if ref.folder is None:
            res.problem = "no known loader reads this value, so its ComfyUI folder is unknown"
        if picked:
            hub_file = hub_file_from_url(picked) or _repo_path(picked)
            res.source = ModelSource(how="--choose", url=hub_url(hub_file) if hub_file else picked, hub=hub_file)
        elif ref.url:
            res.source = ModelSource(how="workflow", url=ref.url, sha256=ref.sha256)
        else:
            res.source = _model_list_source(ref, db) or _manifest_source(ref)
        if res.source is None and search and hub is not None:
            hinted = [
                f for repo in hint_repos or [] for f in hub.files(repo) if f.path.rsplit("/", 1)[-1] == ref.basename
            ]
            if len(hinted) == 1:
                res.source = _from_candidate(hinted[0], "repo linked in a workflow note")
        if res.source is None and search and hub is not None:
            res.candidates = hub.search(ref.basename)
            if len(res.candidates) == 1:
                res.source = _from_candidate(res.candidates[0], "hf-search")
            elif res.candidates and choose is not None:
                chosen = choose(ref, res.candidates)
                if chosen is not None:
                    res.source = _from_candidate(chosen, "hf-search (chosen)")
            if res.source is None and not res.candidates:
                res.problem = res.problem or "not in the workflow, model-list.json, our manifests or a hub search"
            elif res.source is None:
                res.problem = res.problem or f"{len(res.candidates)} hub files fit: choose one"
        elif res.source is None:
            res.problem = res.problem or "not in the workflow, model-list.json or our manifests (hub search off)"
        if res.source is not None:
            if res.source.hub is None:
                res.source.hub = hub_file_from_url(res.source.url)
            if res.source.hub is not None and hub is not None:
                _describe(res.source, hub)
            if res.source.size is None:
                listed = _model_list_source(ref, db)
                if listed is not None and listed.size is not None:
                    res.source.size, res.source.size_approx = listed.size, True
        out.append(res)
    return out


def _repo_path(text: str) -> HubFile | None:
    parts = text.split("/")
    if len(parts) >= 3 and "://" not in text:
        return HubFile(repo="/".join(parts[:2]), path="/".join(parts[2:]))
    return None


def _from_candidate(f: HubFile, how: str) -> ModelSource:
    return ModelSource(how=how, url=hub_url(f), hub=f, size=f.size, sha256=f.sha256)


def _describe(source: ModelSource, hub: Hub) -> None:
    assert source.hub is not None
    described, problem = hub.describe(source.hub)
    if problem == "gated" or hub.gated(source.hub.repo):
        source.gated = True
        source.note = (
            f"gated: accept the license at https://huggingface.co/{source.hub.repo} and set HF_TOKEN"
            if not hub.token
            else f"gated: HF_TOKEN has no access; accept the license at https://huggingface.co/{source.hub.repo}"
        )
        return
    if problem:
        source.note = problem
        return
    source.hub = described
    source.size, source.size_approx = described.size, False
    source.sha256 = described.sha256 or source.sha256
