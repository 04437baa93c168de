"""pistachio.lock: everything that makes a training environment, pinned, in TOML that reads well in a git diff.

    image        the container image tag (+ digest, when the API reports one: RunPod's does not)
    repos        DiffusionPipe and joy-caption-batch commits (+ their submodules' commits)
    python       each pod interpreter's package set (what `pip freeze` lists on a bootstrapped pod)
    models       base-model files: HF repo, revision (commit sha), path, size, sha256
    gpu_classes  each GPU class's training profile and the sha256 of the configs rendered for a reference job
    tool         pistachio-infra's own version

`pistachio-infra lock` writes it, `rebuild` bootstraps a pod from it exactly, `lock --check POD` compares a live pod
with it, and `lock --upgrade [component]` changes it only after showing the diff (rebuild.py, drift.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..catalog import base_model, gpu_classes, profile_for, sources
from ..endpoints import Cloud
from ..errors import ConfigError, MissingToolError, PistachioError

LOCK_VERSION = 1
DEFAULT_LOCK = "pistachio.lock"
SYSTEM_PYTHON = "system"
REFERENCE_TRAIN_IMAGES = 40  # the reference job's train split: sizes the rendered save/eval cadence
HEADER = (
    "pistachio.lock: the exact environment pistachio-infra trains in. Review changes like code.",
    "Written by `pistachio-infra lock`; change it with `pistachio-infra lock --upgrade [component]`.",
    "`pistachio-infra rebuild` bootstraps a pod from it; `pistachio-infra lock --check POD` compares a pod with it.",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolLock(_Model):
    name: str = "pistachio-infra"
    version: str


class ImageLock(_Model):
    name: str
    digest: str = ""  # "" when the cloud's API reports none


class RepoLock(_Model):
    url: str
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    submodules: dict[str, str] = Field(default_factory=dict)  # path -> commit


class PythonEnvLock(_Model):
    interpreter: str  # on the pod; relative paths are relative to the workspace
    own_site_only: bool = False  # a venv layered over the image's Python: only its own packages
    repos: list[str] = Field(default_factory=list)  # the repos whose requirements install into it
    python_version: str = ""
    packages: dict[str, str] = Field(default_factory=dict)  # normalized name -> version


class ModelFileLock(_Model):
    repo_id: str
    revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    path: str  # in the HF repo
    dest: str  # on the pod, relative to the workspace (a snapshot model: its HF_HOME)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelLock(_Model):
    title: str = ""
    snapshot: bool = False  # fetched as a whole snapshot into an HF cache
    files: list[ModelFileLock] = Field(default_factory=list)


class GpuClassLock(_Model):
    gpu_type_id: str
    tier: int
    profile: dict[str, Any]
    configs: dict[str, str]  # rendered file name -> sha256 (reference job)


class Lock(_Model):
    lock_version: int = LOCK_VERSION
    cloud: str  # "runpod" or "sandbox": a lock is rebuilt on the cloud it was made on
    tool: ToolLock
    image: ImageLock
    repos: dict[str, RepoLock] = Field(default_factory=dict)
    python: dict[str, PythonEnvLock] = Field(default_factory=dict)
    models: dict[str, ModelLock] = Field(default_factory=dict)
    gpu_classes: dict[str, GpuClassLock] = Field(default_factory=dict)

    def digest(self) -> str:
        """sha256 of the lock's content (formatting and comments aside): equal digests, equal environments."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def model_files(self) -> Iterable[tuple[str, ModelFileLock]]:
        for name, model in self.models.items():
            for f in model.files:
                yield name, f


def cloud_name(cloud: Cloud) -> str:
    return cloud.name


# --- reading and writing ------------------------------------------------------------------------------------------


def load_lock(path: str | Path) -> Lock:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", "write one with `pistachio-infra lock`") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", "restore it from git or write a new one") from None
    if data.get("lock_version") != LOCK_VERSION:
        raise ConfigError(
            f"{path} has lock_version {data.get('lock_version')!r}; this pistachio-infra reads {LOCK_VERSION}",
            "write a new lock with this version (`pistachio-infra lock --out NEW.lock`)",
        )
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path} is invalid at {where}: {first['msg']}", "restore it from git or write a new one"
        ) from None


def dump_lock(lock: Lock) -> str:
    """The lock as commented TOML: one line per pin, so a change is one line in a diff."""
    import tomlkit

    doc = tomlkit.document()
    for line in HEADER:
        doc.add(tomlkit.comment(line))
    doc.add(tomlkit.nl())
    doc["lock_version"] = lock.lock_version
    doc["cloud"] = lock.cloud

    tool = tomlkit.table()
    tool["name"] = lock.tool.name
    tool["version"] = lock.tool.version
    doc["tool"] = tool

    image = tomlkit.table()
    image["name"] = lock.image.name
    image["digest"] = lock.image.digest
    if not lock.image.digest:
        image["digest"].comment("the API reports no image digest; the tag is what RunPod pulls")
    doc["image"] = image

    repos = tomlkit.table(is_super_table=True)
    for name, repo in lock.repos.items():
        t = tomlkit.table()
        t["url"] = repo.url
        t["commit"] = repo.commit
        if repo.submodules:
            subs = tomlkit.table()
            for path, sha in sorted(repo.submodules.items()):
                subs[path] = sha
            t["submodules"] = subs
        repos[name] = t
    doc["repos"] = repos

    python = tomlkit.table(is_super_table=True)
    for name, env in lock.python.items():
        t = tomlkit.table()
        t["interpreter"] = env.interpreter
        t["own_site_only"] = env.own_site_only
        t["repos"] = env.repos
        t["python_version"] = env.python_version
        packages = tomlkit.table()
        for pkg, version in sorted(env.packages.items()):
            packages[pkg] = version
        t["packages"] = packages
        python[name] = t
    doc["python"] = python

    models = tomlkit.table(is_super_table=True)
    for name, model in lock.models.items():
        t = tomlkit.table()
        t["title"] = model.title
        t["snapshot"] = model.snapshot
        files = tomlkit.aot()
        for f in model.files:
            ft = tomlkit.table()
            for key, value in f.model_dump().items():
                ft[key] = value
            files.append(ft)
        t["files"] = files
        models[name] = t
    doc["models"] = models

    classes = tomlkit.table(is_super_table=True)
    for name, cls in lock.gpu_classes.items():
        t = tomlkit.table()
        t["gpu_type_id"] = cls.gpu_type_id
        t["tier"] = cls.tier
        profile = tomlkit.inline_table()
        profile.update(cls.profile)
        t["profile"] = profile
        configs = tomlkit.table()
        for file, sha in sorted(cls.configs.items()):
            configs[file] = sha
        t["configs"] = configs
        classes[name] = t
    doc["gpu_classes"] = classes
    return tomlkit.dumps(doc)


def write_lock(lock: Lock, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_lock(lock))
    tmp.replace(path)
    return path


# --- what the tool pins today (no pod needed) -------------------------------------------------------------------


def current_tool() -> ToolLock:
    from .. import __version__

    return ToolLock(version=__version__)


def current_image() -> ImageLock:
    return ImageLock(name=sources().image.name)


def pinned_repos(cloud: Cloud) -> dict[str, RepoLock]:
    """The tool's pins for training pods (data/sources.toml), served where the cloud serves them (the sandbox:
    stand-in repos). ComfyUI pods' repos (role "comfyui") are not part of a training lock."""
    out = {}
    for name, repo in sources().for_role("train").items():
        pin = cloud.repo_overrides.get(name)
        out[name] = RepoLock(url=pin.url if pin else repo.url, commit=pin.commit if pin else repo.commit)
    return out


def repo_head(url: str) -> str:
    """The newest commit on a repo's default branch (`git ls-remote URL HEAD`)."""
    try:
        done = subprocess.run(["git", "ls-remote", url, "HEAD"], capture_output=True, text=True, timeout=60,
                              env={"GIT_TERMINAL_PROMPT": "0", "PATH": _path_env()})
    except FileNotFoundError:
        raise MissingToolError("git is not installed", "install git (it resolves repo commits)") from None
    except subprocess.TimeoutExpired:
        raise PistachioError(f"git ls-remote {url} did not answer in 60 s", "check the network and retry") from None
    sha = done.stdout.split()[0] if done.returncode == 0 and done.stdout.split() else ""
    if len(sha) != 40:
        raise PistachioError(f"could not read the head commit of {url}: {done.stderr.strip() or 'no HEAD'}",
                             "check the URL and the network, then retry")
    return sha


def _path_env() -> str:
    from ..settings import get_settings

    return get_settings().path


def python_envs() -> dict[str, PythonEnvLock]:
    """The interpreters a bootstrapped pod has (packages empty): the image's, and one venv per VENV_REPOS repo."""
    from ..pods.bootstrap import VENV_REPOS

    repos = sources().for_role("train")
    envs = {SYSTEM_PYTHON: PythonEnvLock(interpreter="python3", repos=[n for n in repos if n not in VENV_REPOS])}
    for name, venv in VENV_REPOS.items():
        if name in repos:
            envs[name] = PythonEnvLock(
                interpreter=f"{repos[name].dest}/{venv}/bin/python", own_site_only=True, repos=[name]
            )
    return envs


def frozen_requirements(lock: Lock) -> dict[str, str]:
    """repo name -> the requirements text that installs its interpreter's locked package set exactly."""
    out = {}
    for env_name, env in lock.python.items():
        lines = [f"# pistachio.lock [python.{env_name}] ({env.interpreter}, Python {env.python_version})"]
        lines += [f"{name}=={version}" for name, version in sorted(env.packages.items())]
        for repo in env.repos:
            out[repo] = "\n".join(lines) + "\n"
    return out


def reference_job() -> Any:
    """A fixed job whose rendered configs stand for the templates + profile of each GPU class."""
    from ..config.project import Job

    return Job(name="lock-reference", character="reference", trigger="zxq7", dataset=Path("/lock-reference"))


def resolve_gpu_classes() -> dict[str, GpuClassLock]:
    from ..config.render import render_job
    from ..pods.layout import WorkspaceLayout

    job = reference_job()
    out = {}
    for name, cls in gpu_classes().items():
        profile = profile_for(cls)
        rendered = render_job(job, cls, WorkspaceLayout(), train_images=REFERENCE_TRAIN_IMAGES)
        out[name] = GpuClassLock(
            gpu_type_id=cls.gpu_type_id,
            tier=cls.tier,
            profile=profile.model_dump(exclude={"tier"}),
            configs={f: hashlib.sha256(t.encode()).hexdigest() for f, t in sorted(rendered.files.items())},
        )
    return out


def resolve_models(
    cloud: Cloud, names: Sequence[str], revisions: Mapping[str, str] | None = None
) -> dict[str, ModelLock]:
    """Each model's files at a commit sha, with size and sha256, from the HF API (`revisions`: repo_id -> the
    revision to resolve instead of data/models.toml's, usually "main")."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=cloud.hf_endpoint, token=cloud.hf_token)
    infos: dict[tuple[str, str], Any] = {}
    out: dict[str, ModelLock] = {}
    for name in names:
        manifest = base_model(name)
        files: list[ModelFileLock] = []
        for wanted in manifest.files:
            revision = (revisions or {}).get(wanted.repo_id, wanted.revision)
            key = (wanted.repo_id, revision)
            if key not in infos:
                infos[key] = _model_info(api, cloud, wanted.repo_id, revision)
            info = infos[key]
            siblings = {s.rfilename: s for s in info.siblings or []}
            paths = sorted(siblings) if manifest.hf_snapshot else [wanted.path]
            for path in paths:
                if any(f.repo_id == wanted.repo_id and f.path == path for f in files):
                    continue  # a snapshot repo named by several manifest files
                sibling = siblings.get(path)
                if sibling is None:
                    raise PistachioError(
                        f"{wanted.repo_id}@{info.sha[:12]} has no file {path!r} (base model {name})",
                        "the repo changed layout: fix data/models.toml or pin an older revision",
                    )
                dest = wanted.dest
                files.append(
                    ModelFileLock(
                        repo_id=wanted.repo_id,
                        revision=info.sha,
                        path=path,
                        dest=dest,
                        size=int(sibling.size or 0),
                        sha256=_sibling_sha256(cloud, wanted.repo_id, info.sha, sibling),
                    )
                )
        out[name] = ModelLock(title=manifest.title, snapshot=manifest.hf_snapshot, files=files)
    return out


def _model_info(api: Any, cloud: Cloud, repo_id: str, revision: str) -> Any:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return api.model_info(repo_id, revision=revision, files_metadata=True)
    except GatedRepoError:
        raise PistachioError(f"{repo_id} is gated and this HF token may not read it",
                             f"accept its license on huggingface.co/{repo_id} and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise PistachioError(f"{repo_id} has no revision {revision!r}", "pin a revision that exists") from None
    except RepositoryNotFoundError:
        raise PistachioError(f"{repo_id} does not exist at {cloud.hf_endpoint} (or is private)",
                             "check data/models.toml and HF_TOKEN") from None
    except (HfHubHTTPError, OSError) as exc:
        raise PistachioError(f"could not read {repo_id}@{revision} from {cloud.hf_endpoint}: {exc}",
                             "check the network and HF_TOKEN, then retry") from None
    except Exception as exc:  # httpx transport errors and the like
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise PistachioError(f"could not reach {cloud.hf_endpoint} for {repo_id}: {exc}",
                                 "check the network and retry") from None
        raise


def _sibling_sha256(cloud: Cloud, repo_id: str, revision: str, sibling: Any) -> str:
    """LFS files carry their sha256 in the API; small git files carry only a git oid, so they are fetched."""
    lfs = getattr(sibling, "lfs", None)
    sha = getattr(lfs, "sha256", None) if lfs is not None else None
    if sha:
        return str(sha)
    import tempfile

    from huggingface_hub import hf_hub_download

    with tempfile.TemporaryDirectory(prefix="pistachio-lock-") as tmp:
        path = hf_hub_download(repo_id, sibling.rfilename, revision=revision, cache_dir=tmp,
                               endpoint=cloud.hf_endpoint, token=cloud.hf_token)
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()
