"""The HF hub stand-in's write side through the real huggingface_hub client, and pipeline.publish on it.

Client and stand-in are held to huggingface/huggingface_hub 1.33.0 (the version in uv.lock): HfApi.create_repo
(hf_api.py: POST /api/repos/create), HfApi._validate_yaml (POST /api/validate-yaml), _commit_api.
_fetch_upload_modes (POST …/preupload/main, `_validate_preupload_info`) and _commit_api._upload_files /
_prepare_commit_payload (POST …/commit/main, application/x-ndjson header + base64 "file" lines).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError
from safetensors.numpy import load_file, save_file

from pistachio_infra.pipeline.publish import (
    BASE_MODEL,
    CardFacts,
    PublishError,
    bundle,
    model_card,
    publish,
    pull,
    repo_id_for,
)
from pistachio_infra.sandbox.hf import HubStore, serve

WRITE = "hf_" + "w" * 12 + "sandboxwrite"  # built at run time: no token-shaped literal in the repo
READ_ONLY = "hf_read" + "r" * 12


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    root = tmp_path / "hub"
    with serve(root) as endpoint:
        yield root, endpoint


def _facts() -> CardFacts:
    return CardFacts(job="pip", character="Pip", trigger="p1p", base_model=BASE_MODEL, step=12,
                     checkpoint="step12", verdict="converged", why="the eval loss was lowest at step 12",
                     eval_loss=0.1234, settings=(("rank", "32"), ("lr", "5e-05")))


def _bundle(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_A.weight": np.ones((4, 8), dtype=np.float32)}, str(lora))
    config = tmp_path / "cfg.json"
    config.write_text('{"r": 32, "peft_type": "LORA"}')
    report = tmp_path / "report"
    (report / "captions").mkdir(parents=True)
    (report / "captions" / "pip_01.txt").write_text("p1p, a mascot")
    (report / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\nplot")
    (report / "report.md").write_text("# report")
    return bundle(tmp_path / "bundle", lora=lora, adapter_config=config, report_folder=report,
                  card=model_card(_facts()))


def test_publish_creates_a_private_repo_with_adapter_and_card_then_pull_reads_it(hub, tmp_path):
    root, endpoint = hub
    repo_id = repo_id_for("sandbox-user", "pip")
    oid = publish(_bundle(tmp_path), repo_id, token=WRITE, endpoint=endpoint)
    repo = HubStore(root).repo(repo_id)
    assert repo is not None and repo.card.private and repo.resolve("main").id == oid
    files = set(repo.resolve("main").files)
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "loss.png", "report.md",
            "captions/pip_01.txt"} <= files
    card = HfApi(endpoint=endpoint, token=WRITE).model_info(repo_id)
    assert card.private
    readme = hf_hub_download(repo_id, "README.md", endpoint=endpoint, token=WRITE,
                             cache_dir=str(tmp_path / "c"))
    text = Path(readme).read_text()
    assert text.startswith("---\n") and f"base_model: {BASE_MODEL}" in text and "instance_prompt: p1p" in text
    assert "step 12" in text and WRITE not in text
    # private: anonymous readers are refused, a token reads it
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=endpoint, token=False).model_info(repo_id)
    lora = pull(repo_id, tmp_path / "pulled", token=READ_ONLY, endpoint=endpoint)
    assert load_file(str(lora))["lora_A.weight"].shape == (4, 8)
    # publishing again is idempotent (exist_ok), one more commit on main
    again = publish(_bundle(tmp_path / "again"), repo_id, token=WRITE, endpoint=endpoint)
    assert len(again) == 40 and HubStore(root).repo(repo_id).resolve("main").parent == oid


def test_publish_with_a_read_only_or_no_token_is_a_clear_error(hub, tmp_path):
    _, endpoint = hub
    folder = _bundle(tmp_path)
    with pytest.raises(PublishError, match="write access"):
        publish(folder, "sandbox-user/pip-lora", token=READ_ONLY, endpoint=endpoint)
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=endpoint, token=False).create_repo("sandbox-user/x", private=True)
    assert err.value.response.status_code == 401


def test_a_bundle_holding_the_token_is_refused(hub, tmp_path):
    _, endpoint = hub
    folder = _bundle(tmp_path)
    (folder / "report.md").write_text(f"token {WRITE}")
    with pytest.raises(PublishError, match="credential"):
        publish(folder, "sandbox-user/pip-lora", token=WRITE, endpoint=endpoint)
    assert not (folder / "report.md").exists()
