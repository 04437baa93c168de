"""The environment stack program under pulumi's mocks: resources declared with the right inputs, outputs wired."""

from __future__ import annotations

import base64
import json

import dill
import pulumi
import pytest
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockMonitor

from pistachio_infra import catalog
from pistachio_infra.errors import ConfigError
from pistachio_infra.stacks.providers import NetworkVolumeProvider, PodProvider, TemplateProvider

VOLUME = "pulumi-python:dynamic/runpod:NetworkVolume"
TEMPLATE = "pulumi-python:dynamic/runpod:Template"
POD = "pulumi-python:dynamic/runpod:Pod"
KEY = "rpa_SECRET_KEY_MUST_NOT_LEAK_123"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: dict[str, tuple[str, dict]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ == POD:
            state |= {"status": "RUNNING", "ssh_host": "203.0.113.7", "ssh_port": 40022}
        self.created[args.name] = (args.typ, dict(args.inputs))
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


@pytest.fixture
def mocks(monkeypatch, tmp_path):
    monkeypatch.setenv("PISTACHIO_HOME", str(tmp_path))
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    saved = pulumi_settings.SETTINGS
    m = RecordingMocks()
    pulumi.runtime.set_mocks(m, project="pistachio-env", stack="dev", preview=False, monitor=MockMonitor(m))
    yield m
    pulumi.runtime.set_all_config({})
    pulumi_settings.configure(saved)


def _config(**values: object) -> None:
    pulumi.runtime.set_all_config(
        {f"pistachio:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    )


def _declare():
    from pistachio_infra.stacks.program import declare, settings_from_config

    return declare(settings_from_config())


@pulumi.runtime.test
def test_volume_and_template_inputs_and_outputs(mocks):
    _config(dataCenter="EU-RO-1", gpus=["a6000"], volumeGb=200)
    exported = _declare()
    assert "comfyui_pod_id" not in exported

    def check(values):
        volume_id, dc, size, template_id, image = values
        assert (volume_id, dc, size, template_id) == ("model-cache-id", "EU-RO-1", 200, "pod-template-id")
        assert image == catalog.sources().image.name
        typ, vol = mocks.created["model-cache"]
        assert typ == VOLUME
        assert {k: vol[k] for k in ("name", "size_gb", "data_center_id")} == {
            "name": "pistachio-dev-models", "size_gb": 200, "data_center_id": "EU-RO-1"}
        typ, tpl = mocks.created["pod-template"]
        assert typ == TEMPLATE
        assert tpl["ports"] == ["22/tcp"] and tpl["image"] == image and tpl["name"] == "pistachio-dev"
        assert set(mocks.created) == {"model-cache", "pod-template"}

    keys = ("volume_id", "data_center_id", "volume_gb", "template_id", "image")
    return pulumi.Output.all(*(exported[k] for k in keys)).apply(check)


@pulumi.runtime.test
def test_comfyui_pod_mounts_the_volume_in_its_data_center(mocks):
    _config(dataCenter="US-KS-2", gpus=["a6000", "NVIDIA A40"], comfyui="true", comfyuiGpu="l40s",
            templateEnv={"HF_HUB_ENABLE_HF_TRANSFER": "1"})
    exported = _declare()

    def check(values):
        pod_id, host, port = values
        assert (pod_id, host, port) == ("comfyui-id", "203.0.113.7", 40022)
        typ, pod = mocks.created["comfyui"]
        assert typ == POD
        assert pod["network_volume_id"] == "model-cache-id"
        assert pod["data_center_id"] == "US-KS-2"
        assert pod["template_id"] == "pod-template-id"
        assert pod["gpu_type_id"] == catalog.gpu_class("l40s").gpu_type_id
        assert "8188/http" in pod["ports"] and "22/tcp" in pod["ports"]
        assert mocks.created["pod-template"][1]["env"] == {"HF_HUB_ENABLE_HF_TRANSFER": "1"}

    return pulumi.Output.all(exported["comfyui_pod_id"], exported["comfyui_ssh_host"],
                             exported["comfyui_ssh_port"]).apply(check)


@pulumi.runtime.test
def test_providers_are_pickled_by_reference_without_the_key(mocks):
    _config(dataCenter="EU-RO-1", gpus=["a6000"], comfyui="true")
    exported = _declare()

    def check(_):
        kinds = {"model-cache": NetworkVolumeProvider, "pod-template": TemplateProvider, "comfyui": PodProvider}
        for name, cls in kinds.items():
            blob = base64.b64decode(mocks.created[name][1]["__provider"])
            assert KEY.encode() not in blob
            assert b"pistachio_infra.stacks.providers" in blob  # by reference, not bytecode
            assert len(blob) < 400
            assert type(dill.loads(blob)) is cls

    return exported["comfyui_pod_id"].apply(check)


def test_unknown_gpu_class_is_a_config_error(mocks):
    _config(dataCenter="EU-RO-1", gpus=["gtx-9000"])
    with pytest.raises(ConfigError, match="unknown GPU class"):
        _declare()


def test_top_level_project_runs_the_same_program(mocks):
    """stacks/__main__.py (for `pulumi up` users) declares the same resources; its Pulumi.yaml names our project."""
    import runpy
    from pathlib import Path

    import yaml

    from pistachio_infra.stacks.outputs import PROJECT

    project_dir = Path(__file__).resolve().parents[2] / "stacks"
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT and project["runtime"]["name"] == "python"
    _config(dataCenter="EU-RO-1", gpus=["a40"])

    @pulumi.runtime.test
    def run_project() -> None:
        runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")

    run_project()  # returns once every registration has been answered
    assert {n: t for n, (t, _) in mocks.created.items()} == {"model-cache": VOLUME, "pod-template": TEMPLATE}
    assert mocks.created["model-cache"][1]["data_center_id"] == "EU-RO-1"
