"""Choosing the data center from live stock, and GPU classes → RunPod ids."""

from __future__ import annotations

import pytest

from pistachio_infra import catalog
from pistachio_infra.errors import ConfigError, PistachioError
from pistachio_infra.runpod.port import DataCenterStock, GpuType, Stock
from pistachio_infra.stacks.placement import pick_data_center, resolve_gpu_type_ids


def gpu(gpu_id: str, **stock: Stock) -> GpuType:
    return GpuType(id=gpu_id, name=gpu_id, memory_gb=48,
                   data_centers=[DataCenterStock(data_center_id=dc.replace("_", "-"), stock=s)
                                 for dc, s in stock.items()])


def test_most_wanted_types_then_best_stock_then_name():
    gpus = [
        gpu("A", EU_RO_1=Stock.LOW, US_KS_2=Stock.HIGH, CA_MTL_1=Stock.HIGH),
        gpu("B", EU_RO_1=Stock.LOW, CA_MTL_1=Stock.NONE),
        gpu("C", US_KS_2=Stock.HIGH),  # not wanted
    ]
    assert pick_data_center(gpus, ["A", "B"]) == "EU-RO-1"  # the only one with both
    assert pick_data_center(gpus, ["A"]) == "CA-MTL-1"  # HIGH tie: by name
    with pytest.raises(PistachioError, match="in stock"):
        pick_data_center(gpus, ["B-unknown"])


def test_classes_and_ids():
    a6000 = catalog.gpu_class("a6000")
    assert resolve_gpu_type_ids(["a6000", a6000.gpu_type_id]) == list(a6000.gpu_type_ids)
    assert resolve_gpu_type_ids(["NVIDIA Some New GPU"]) == ["NVIDIA Some New GPU"]
    with pytest.raises(ConfigError, match="unknown GPU class"):
        resolve_gpu_type_ids(["gtx9000"])
