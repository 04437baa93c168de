"""The dynamic providers' methods called directly against the sandbox: create → read → diff → update → replace →
delete, and drift (a resource deleted behind Pulumi's back is gone on refresh)."""

from __future__ import annotations

import pytest

from pistachio_infra.stacks.providers import NetworkVolumeProvider, PodProvider, TemplateProvider

IMAGE = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"


def _failures(result) -> dict[str, str]:
    return {f.property: f.reason for f in result.failures}


def test_volume_lifecycle_and_drift(sandbox, api, where):
    provider = NetworkVolumeProvider()
    dc, _, other_dc = where
    checked = provider.check({}, {"name": "pst-models", "data_center_id": dc, "size_gb": 20.0, "__provider": "x"})
    assert not checked.failures and checked.inputs == {"name": "pst-models", "size_gb": 20, "data_center_id": dc}

    created = provider.create(checked.inputs)
    assert api.get_volume(created.id).size_gb == 20
    read = provider.read(created.id, created.outs)
    assert read.id == created.id and read.outs == created.outs

    grown = {**checked.inputs, "size_gb": 40, "name": "pst-models-2"}
    diff = provider.diff(created.id, created.outs, grown)
    assert diff.changes and diff.replaces == [] and set(diff.stables) == {"data_center_id"}
    updated = provider.update(created.id, created.outs, grown)
    assert updated.outs == {"name": "pst-models-2", "size_gb": 40, "data_center_id": dc}
    assert api.get_volume(created.id).size_gb == 40

    assert "never shrink" in _failures(provider.check(updated.outs, {**grown, "size_gb": 30}))["size_gb"]
    assert "size_gb" in _failures(provider.check({}, {**grown, "size_gb": 5}))
    assert "data_center_id" in _failures(provider.check({}, {"name": "x", "data_center_id": ""}))

    moved = {**grown, "data_center_id": other_dc}
    diff = provider.diff(created.id, updated.outs, moved)
    assert diff.replaces == ["data_center_id"] and not diff.delete_before_replace
    replacement = provider.create(moved)  # create-before-delete, as the engine does for volumes
    provider.delete(created.id, updated.outs)
    assert api.get_volume(created.id) is None
    assert api.get_volume(replacement.id).data_center_id == moved["data_center_id"]

    api.delete_volume(replacement.id)  # drift: deleted behind Pulumi's back
    gone = provider.read(replacement.id, replacement.outs)
    assert gone.id == "" and gone.outs == {}
    provider.delete(replacement.id, replacement.outs)  # deleting what is already gone is not an error


def test_template_updates_in_place_and_drift(sandbox, api):
    provider = TemplateProvider()
    inputs = provider.check({}, {"name": "pst-template", "image": IMAGE, "env": {"A": "1"}}).inputs
    assert inputs["ports"] == ["22/tcp"] and inputs["container_disk_gb"] == 50
    created = provider.create(inputs)
    assert provider.read(created.id, created.outs).outs == created.outs

    news = {**inputs, "image": IMAGE.replace("1.0.2", "1.0.3"), "env": {"A": "2"}, "container_disk_gb": 80}
    diff = provider.diff(created.id, created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, news)
    fresh = api.get_template(created.id)
    assert (fresh.image, fresh.env, fresh.container_disk_gb) == (news["image"], {"A": "2"}, 80)
    assert provider.diff(created.id, updated.outs, news).changes is False

    api.delete_template(created.id)
    assert provider.read(created.id, updated.outs).id == ""
    provider.delete(created.id, updated.outs)


def test_pod_lifecycle_replace_and_drift(sandbox, api, public_key, where):
    provider = PodProvider(ready_timeout_s=60, poll_s=0.2)
    dc, gpu, other_dc = where
    inputs = provider.check({}, {"name": "pst-comfy", "gpu_type_id": gpu, "image": IMAGE, "data_center_id": dc,
                                 "env": {"PUBLIC_KEY": public_key, "ROLE": "comfyui"}}).inputs
    created = provider.create(inputs)
    assert created.outs["status"] == "RUNNING" and created.outs["ssh_host"] and created.outs["ssh_port"]
    assert created.outs["placed_data_center_id"] == dc
    assert provider.read(created.id, created.outs).outs == created.outs
    assert provider.create(inputs).id == created.id  # same name: adopted, not a second pod

    news = {**inputs, "env": {**inputs["env"], "ROLE": "comfyui-2"}}
    diff = provider.diff(created.id, created.outs, news)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, created.outs, news)
    assert updated.outs["env"]["ROLE"] == "comfyui-2" and api.get_pod(created.id).env["ROLE"] == "comfyui-2"

    for key, value in (("image", IMAGE.replace("1.0.2", "1.0.3")), ("data_center_id", other_dc)):
        diff = provider.diff(created.id, updated.outs, {**news, key: value})
        assert diff.replaces == [key] and diff.delete_before_replace is True

    other_gpu = next(g.id for g in api.list_gpu_types() if g.id != gpu and any(
        d.data_center_id == dc and d.stock != "NONE" for d in g.data_centers))
    replaced = {**news, "gpu_type_id": other_gpu}
    assert provider.diff(created.id, updated.outs, replaced).replaces == ["gpu_type_id"]
    provider.delete(created.id, updated.outs)  # delete-before-replace: the name is reused
    assert api.get_pod(created.id) is None
    replacement = provider.create(replaced)
    assert replacement.id != created.id and api.get_pod(replacement.id).gpu_type_id == other_gpu

    api.terminate_pod(replacement.id)  # drift
    assert provider.read(replacement.id, replacement.outs).id == ""
    provider.delete(replacement.id, replacement.outs)


@pytest.mark.parametrize("cls", [NetworkVolumeProvider, TemplateProvider, PodProvider])
def test_unknown_values_during_preview_pass_check(cls):
    from pulumi.runtime.rpc import UNKNOWN

    news = dict.fromkeys(cls.inputs, UNKNOWN)
    assert cls().check({}, news).failures == []
