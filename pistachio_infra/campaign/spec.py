"""Loading a campaign: a campaign.toml ([campaign] + [jobs.*], [project] optional) or a pistachio.toml with a
[campaign] table. Both validate through spec.Project, so jobs are exactly the jobs `train` runs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config.project import CampaignSettings, Job, Project, _read_toml, _validate
from ..errors import ConfigError


@dataclass(frozen=True)
class Campaign:
    path: Path
    project: Project
    settings: CampaignSettings
    jobs: tuple[Job, ...]  # in the file's order (or [campaign].jobs order)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

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
    project: Project = _validate(Project, data, path)
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
    return Campaign(path=path.resolve(), project=project, settings=settings, jobs=jobs)


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
