from __future__ import annotations

from pathlib import Path

import pytest

from pistachio_infra.config.project import load_job_file, load_project, resolve_job
from pistachio_infra.errors import ConfigError

BASE = """
[project]
name = "p"

[jobs.alice]
character = "Alice"
trigger = "al1ce"
dataset = "data/alice"
"""


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    path = tmp_path / "pistachio.toml"
    path.write_text(base + extra)
    return path


def error_for(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_project(write(tmp_path, extra))
    return str(err.value)


def test_defaults_and_relative_paths(tmp_path):
    project = load_project(write(tmp_path))
    job = project.jobs["alice"]
    assert job.name == "alice"
    assert job.dataset == (tmp_path / "data" / "alice").resolve()
    assert job.base_model == "wan21-t2v-14b"
    assert job.gpu == ["auto"] and job.gpu_auto
    assert job.epochs == 100 and job.max_steps is None
    assert (job.eval_split, job.rank, job.resolutions) == (0.2, 32, [512])
    assert not job.interruptible and not job.recaption
    assert not job.wandb_enabled


def test_full_job(tmp_path):
    extra = """gpu = ["H100", "a100"]
data_centers = ["EU-RO-1", "US-KS-2"]
max_steps = 300
resolutions = [512, 768]
wandb_project = "loras"
budget_usd = 12.5
interruptible = true
[jobs.alice.overrides]
warmup_steps = 20
"""
    job = load_project(write(tmp_path, extra)).jobs["alice"]
    assert job.gpu == ["h100", "a100"]
    assert job.epochs is None and job.max_steps == 300
    assert job.wandb_enabled and job.overrides == {"warmup_steps": 20}


def test_gpu_class_written_as_a_number(tmp_path):
    assert load_project(write(tmp_path, "gpu = 4090\n")).jobs["alice"].gpu == ["4090"]
    assert load_project(write(tmp_path, "gpu = [3090, 'a40']\n")).jobs["alice"].gpu == ["3090", "a40"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('gpu = "rtx9000"', ["jobs.alice.gpu", "'rtx9000'", "allowed: auto, a6000"]),
        ('gpu = ["a40", "a40"]', ["jobs.alice.gpu", "listed twice"]),
        ("eval_split = 0.7", ["jobs.alice.eval_split = 0.7", "less than or equal to 0.5"]),
        ("resolutions = [500]", ["jobs.alice.resolutions.0 = 500", "multiple of 16"]),
        ("resolutions = [256, 512, 768, 1024]", ["jobs.alice.resolutions", "at most 3"]),
        ("rank = 0", ["jobs.alice.rank = 0", "greater than or equal to 1"]),
        ('lr = "fast"', ["jobs.alice.lr = 'fast'"]),
        ("bogus = 1", ["jobs.alice.bogus: unknown key", "allowed keys:", "trigger"]),
        ('data_centers = ["mars"]', ["'mars'", "data center id"]),
        ('base_model = "sdxl"', ["jobs.alice.base_model = 'sdxl'", "allowed: wan21-t2v-14b"]),
        ('overrides = { output_dir = "/tmp/x" }', ["output_dir", "cannot be overridden"]),
    ],
)
def test_field_errors_name_field_value_and_allowed(tmp_path, extra, expected):
    message = error_for(tmp_path, extra)
    assert message.startswith(str(tmp_path / "pistachio.toml"))
    for fragment in expected:
        assert fragment in message
    assert "\n" not in message


def test_bad_trigger_and_missing_fields(tmp_path):
    base = '[project]\nname = "p"\n[jobs.bob]\ntrigger = "two words"\ndataset = "x"\n'
    with pytest.raises(ConfigError) as err:
        load_project(write(tmp_path, base=base))
    message = str(err.value)
    assert "jobs.bob.character is missing (required)" in message
    assert "jobs.bob.trigger = 'two words'" in message and "one token" in message


def test_bad_job_name_and_unknown_section(tmp_path):
    bad_name = '[jobs."Bad Name"]\ncharacter="x"\ntrigger="ab1"\ndataset="d"\n'
    assert "job names use lowercase" in error_for(tmp_path, bad_name)
    message = error_for(tmp_path, "[campaing]\nbudget = 3\n")
    assert "campaing: unknown key" in message and "allowed keys: project, jobs" in message


def test_syntax_error_and_missing_file(tmp_path):
    path = tmp_path / "pistachio.toml"
    path.write_text("[project\nname=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_project(path)
    with pytest.raises(ConfigError, match="pistachio-infra init"):
        load_project(tmp_path / "nope.toml")


def test_resolve_job_by_name_dataset_dir_and_job_file(tmp_path):
    project = load_project(write(tmp_path))
    assert resolve_job(project, "alice").name == "alice"
    (tmp_path / "data" / "alice").mkdir(parents=True)
    assert resolve_job(project, str(tmp_path / "data" / "alice")).name == "alice"

    other = tmp_path / "Other Set"
    other.mkdir()
    (other / "job.toml").write_text('character = "Bob"\ntrigger = "b0b"\ngpu = "a40"\n')
    job = resolve_job(project, str(other))
    assert (job.name, job.dataset, job.gpu) == ("other-set", other.resolve(), ["a40"])
    named = tmp_path / "carol.toml"
    named.write_text('character = "Carol"\ntrigger = "c4rol"\ndataset = "imgs"\n')
    job = load_job_file(named)
    assert job.name == "carol" and job.dataset == (tmp_path / "imgs").resolve()


def test_resolve_job_errors(tmp_path):
    project = load_project(write(tmp_path))
    with pytest.raises(ConfigError, match="jobs: alice"):
        resolve_job(project, "zed")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ConfigError, match=r"no job\.toml"):
        resolve_job(None, str(bare))
    with pytest.raises(ConfigError, match=r"bad\.toml: gpu = 'zz': unknown GPU class"):
        resolve_job(project, str(write_job(tmp_path, 'gpu = "zz"')))


def write_job(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(f'character = "x"\ntrigger = "ab1"\n{extra}\n')
    return path


def test_example_project_loads_and_renders():
    from pistachio_infra.config.render import render_job

    example = Path(__file__).resolve().parents[2] / "examples" / "pistachio.toml"
    project = load_project(example)
    job = project.jobs["pistachio-cat"]
    assert job.dataset == (example.parent / "datasets" / "pistachio-cat").resolve()
    for gpu in job.gpu:
        rendered = render_job(job, gpu, train_images=20)
        assert rendered.gpu_class == gpu and rendered.cadence.every >= 1
