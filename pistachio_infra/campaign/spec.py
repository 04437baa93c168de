"""Loading a campaign: a campaign.toml ([campaign] + [jobs.*], [project] optional) or a pistachio.toml with a
[campaign] table. Both validate through spec.Project, so jobs are exactly the jobs `train` runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config.project import JOB_NAME_RE, CampaignSettings, Job, Project, _read_toml, _validate
from ..errors import ConfigError


@dataclass(frozen=True)
class Campaign:
    path: Path
    project: Project
    settings: CampaignSettings
    jobs: tuple[Job, ...]  # in the file's order (or [campaign].jobs order)
    work_dir: Path  # datasets given as relative paths, runs/ and the ComfyUI folder are under it


    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def base_dir(self) -> Path:
        return self.work_dir

    @property
    def fingerprint(self) -> str:
        """Changes when anything that shapes the plan changes (settings, jobs)."""
        data = {"campaign": self.settings.model_dump(mode="json"),
                "jobs": [j.model_dump(mode="json") for j in self.jobs]}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_campaign(path: str | Path) -> Campaign:
    path = Path(path).expanduser()
    if path.is_dir():
        candidates = [path / "campaign.toml", path / "pistachio.toml"]
        path = next((p for p in candidates if p.is_file()), candidates[0])
    data = _read_toml(path)
    if "campaign" not in data:
        raise ConfigError(f"{path} has no [campaign] table",
                          "add [campaign] with name and budget_usd (see examples/campaign.toml)")
    if "project" not in data and isinstance(data["campaign"], dict):
        data = {**data, "project": {"name": str(data["campaign"].get("name", "campaign"))}}
    work_dir = _work_dir(path, data["campaign"])
    project: Project = _validate(Project, data, path, base_dir=work_dir)
    settings = project.campaign
    assert settings is not None
    names = settings.jobs if settings.jobs is not None else list(project.jobs)
    unknown = [n for n in names if n not in project.jobs]
    if unknown:
        raise ConfigError(f"{path}: [campaign].jobs names {', '.join(unknown)}, which no [jobs.*] table defines",
                          f"define [jobs.{unknown[0]}] or remove it from the list")
    if not names:
        raise ConfigError(f"{path}: the campaign has no jobs", "add [jobs.NAME] tables (character, trigger, dataset)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: [campaign].jobs lists a job twice", "list each job once")
    jobs = tuple(project.jobs[n] for n in names)
    if settings.interruptible:
        jobs = tuple(j.model_copy(update={"interruptible": True}) for j in jobs)
    if work_dir != path.parent.resolve():
        work_dir.mkdir(parents=True, exist_ok=True)
    return Campaign(path=path.resolve(), project=project, settings=settings, jobs=jobs, work_dir=work_dir)


def _work_dir(path: Path, table: object) -> Path:
    """[campaign] work_dir (relative to the file), else for a demo campaign (sample_datasets) the state dir's
    campaigns/<name>/ — the generated images, runs and ComfyUI folder of the shipped example never land in the
    repo's examples/ — else the file's own folder, like a pistachio.toml."""
    from ..paths import state_dir

    table = table if isinstance(table, dict) else {}
    chosen = table.get("work_dir")
    if isinstance(chosen, str) and chosen.strip():
        return (path.parent / Path(chosen).expanduser()).resolve()
    name = table.get("name")
    if table.get("sample_datasets") is True and isinstance(name, str) and JOB_NAME_RE.match(name):
        return (state_dir() / "campaigns" / name).resolve()
    return path.parent.resolve()


def ensure_sample_datasets(campaign: Campaign, images: int = 16) -> list[Path]:
    """`sample_datasets = true`: write generated sample images into every missing or empty dataset folder
    (deterministic per job). Returns the folders written."""
    if not campaign.settings.sample_datasets:
        return []
    from ..dataset.demo import CHARACTERS, generate_dataset
    from ..dataset.scan import image_files

    written = []
    for index, job in enumerate(campaign.jobs):
        if job.dataset.is_dir() and image_files(job.dataset):
            continue
        seed = int(hashlib.sha256(job.name.encode()).hexdigest()[:6], 16)
        # the sample character named first in the job's `character` ("Mira at night" → mira), else one per job
        first = job.character.split()[0].lower() if job.character.split() else ""
        character = first if first in CHARACTERS else list(CHARACTERS)[index % len(CHARACTERS)]
        generate_dataset(job.dataset, images, seed=seed, character=character)
        written.append(job.dataset)
    return written
