"""Campaign files: campaign.toml or a pistachio.toml [campaign] table; bad input is one clear line."""

from __future__ import annotations

import pytest

from pistachio_infra.campaign.spec import ensure_sample_datasets, load_campaign
from pistachio_infra.errors import ConfigError


def _write(path, text: str):  # type: ignore[no-untyped-def]
    path.write_text(text)
    return path


JOBS = """
[jobs.a]
character = "A"
trigger = "aaa1"
dataset = "data/a"

[jobs.b]
character = "B"
trigger = "bbb1"
dataset = "data/b"
"""


def test_campaign_toml_without_project_names_jobs_in_order(tmp_path):
    path = _write(tmp_path / "campaign.toml", '[campaign]\nname = "c1"\nbudget_usd = 3\ngpu = [4090, "a40"]\n'
                  'interruptible = true\njobs = ["b", "a"]\n' + JOBS)
    c = load_campaign(path)
    assert c.name == "c1" and c.project.project.name == "c1"
    assert [j.name for j in c.jobs] == ["b", "a"]
    assert c.settings.gpu == ["4090", "a40"] and all(j.interruptible for j in c.jobs)
    assert c.jobs[1].dataset == (tmp_path / "data" / "a").resolve()
    assert load_campaign(tmp_path).name == "c1"  # a folder: its campaign.toml


def test_pistachio_toml_with_a_campaign_table_and_the_fingerprint(tmp_path):
    path = _write(tmp_path / "pistachio.toml", '[project]\nname = "p"\n[campaign]\nname = "c2"\nbudget_usd = 9.5\n'
                  + JOBS)
    c = load_campaign(path)
    assert [j.name for j in c.jobs] == ["a", "b"] and c.settings.max_concurrent == 2
    before = c.fingerprint
    path.write_text(path.read_text().replace("budget_usd = 9.5", "budget_usd = 10"))
    assert load_campaign(path).fingerprint != before


@pytest.mark.parametrize(("text", "expected"), [
    ('[project]\nname = "p"\n' + JOBS, "has no [campaign] table"),
    ('[campaign]\nname = "c"\nbudget_usd = 0\n' + JOBS, "campaign.budget_usd = 0"),
    ('[campaign]\nname = "C C"\nbudget_usd = 1\n' + JOBS, "a campaign name uses lowercase"),
    ('[campaign]\nname = "c"\nbudget_usd = 1\ngpu = ["tpu"]\n' + JOBS, "unknown GPU class 'tpu'"),
    ('[campaign]\nname = "c"\nbudget_usd = 1\njobs = ["zz"]\n' + JOBS, "which no [jobs.*] table defines"),
    ('[campaign]\nname = "c"\nbudget_usd = 1\n', "the campaign has no jobs"),
    ('[campaign]\nname = "c"\nbudget_usd = 1\nmax_concurrent = 0\n' + JOBS, "campaign.max_concurrent = 0"),
    ('[campaign]\nname = "c"\nbudget_usd = 1\nbudget = 2\n' + JOBS, "campaign.budget: unknown key"),
])
def test_bad_campaign_files_are_one_line_errors(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_campaign(_write(tmp_path / "campaign.toml", text))
    assert expected in err.value.one_line() and "\n" not in err.value.one_line()


def test_sample_datasets_fill_missing_folders_only(tmp_path):
    path = _write(tmp_path / "campaign.toml", '[campaign]\nname = "c"\nbudget_usd = 1\nsample_datasets = true\n'
                  'work_dir = "."\n' + JOBS)
    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "b" / "mine.png").write_bytes(b"not touched")
    written = ensure_sample_datasets(load_campaign(path), images=6)
    assert written == [(tmp_path / "data" / "a").resolve()]
    assert len(list((tmp_path / "data" / "a").glob("*.png"))) == 6
    assert [p.name for p in (tmp_path / "data" / "b").iterdir()] == ["mine.png"]
    off = _write(tmp_path / "off.toml", '[campaign]\nname = "c"\nbudget_usd = 1\n' + JOBS.replace("data/a", "data/x"))
    assert ensure_sample_datasets(load_campaign(off)) == [] and not (tmp_path / "data" / "x").exists()


def test_a_demo_campaign_keeps_its_data_in_the_state_dir_and_work_dir_moves_any_campaign(tmp_path, monkeypatch):
    """Issue 15: the shipped example (sample_datasets) must not write images, runs or a ComfyUI folder into the
    repo's examples/; `work_dir` puts any campaign's relative paths where the user chose."""
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path / "home"))
    shipped = tmp_path / "examples"
    shipped.mkdir()
    demo = _write(shipped / "campaign.toml", '[campaign]\nname = "demo-c"\nbudget_usd = 1\nsample_datasets = true\n'
                  + JOBS)
    c = load_campaign(demo)
    assert c.base_dir == (tmp_path / "home" / "campaigns" / "demo-c").resolve()
    assert ensure_sample_datasets(c, images=4) and all(j.dataset.is_relative_to(c.base_dir) for j in c.jobs)
    assert sorted(p.name for p in shipped.iterdir()) == ["campaign.toml"]  # nothing written beside the file
    chosen = _write(tmp_path / "mine.toml", '[campaign]\nname = "c"\nbudget_usd = 1\nwork_dir = "~/work"\n' + JOBS)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    mine = load_campaign(chosen)
    assert mine.base_dir == (tmp_path / "user" / "work").resolve()
    assert all(j.dataset.is_relative_to(mine.base_dir) for j in mine.jobs)
    plain = load_campaign(_write(tmp_path / "plain.toml", '[campaign]\nname = "c"\nbudget_usd = 1\n' + JOBS))
    assert plain.base_dir == tmp_path.resolve()  # like a pistachio.toml: beside the file
