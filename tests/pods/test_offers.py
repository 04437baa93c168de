"""Which offers are tried, in which order: the user's classes, then data centers by stock or by preference."""

from __future__ import annotations

import pytest

from pistachio_infra.pods import candidate_offers
from pistachio_infra.runpod.port import DataCenterStock, GpuType, NoCapacityError, Stock


def gpu(type_id: str, price: float, **stock: str) -> GpuType:
    dcs = [DataCenterStock(data_center_id=dc.replace("_", "-"), stock=Stock(s)) for dc, s in stock.items()]
    best = max((d.stock for d in dcs), key=["NONE", "LOW", "MEDIUM", "HIGH"].index, default=Stock.NONE)
    return GpuType(id=type_id, name=type_id, memory_gb=48, secure_price=price, stock=best, data_centers=dcs)


TYPES = [
    gpu("NVIDIA RTX A6000", 0.49, US_TX_3="LOW", EU_RO_1="HIGH", CA_MTL_1="NONE"),
    gpu("NVIDIA A40", 0.44, US_TX_3="MEDIUM", EU_RO_1="NONE"),
    gpu("NVIDIA L40S", 0.86, CA_MTL_1="NONE"),
]


def where(offers):
    return [(o.gpu_class, o.data_center_id) for o in offers]


def test_classes_in_user_order_then_best_stock_first_and_no_empty_data_centers():
    offers = candidate_offers(TYPES, ["a6000", "a40"])
    assert where(offers) == [("a6000", "EU-RO-1"), ("a6000", "US-TX-3"), ("a40", "US-TX-3")]
    assert offers[0].price_per_hr == 0.49 and offers[0].gpu_type_id == "NVIDIA RTX A6000"
    assert offers[0].min_memory_gb > 28  # Wan 14B loads ~28 GB into system RAM first


def test_fallback_order_is_the_users_not_the_cheapest():
    assert where(candidate_offers(TYPES, ["a40", "a6000"]))[0] == ("a40", "US-TX-3")


def test_preferred_data_centers_are_tried_in_the_given_order_and_others_skipped():
    offers = candidate_offers(TYPES, ["a6000", "a40"], data_centers=["US-TX-3", "EU-RO-1"])
    assert where(offers) == [("a6000", "US-TX-3"), ("a6000", "EU-RO-1"), ("a40", "US-TX-3")]


def test_network_volume_pins_every_offer_to_its_data_center():
    offers = candidate_offers(TYPES, ["a6000", "a40"], volume_dc="US-TX-3")
    assert where(offers) == [("a6000", "US-TX-3"), ("a40", "US-TX-3")]


def test_no_stock_anywhere_is_a_clear_no_capacity_error():
    with pytest.raises(NoCapacityError) as err:
        candidate_offers(TYPES, ["l40s"])
    assert "l40s" in err.value.cause and err.value.fix
    with pytest.raises(NoCapacityError, match="EU-RO-1"):
        candidate_offers(TYPES, ["a40"], volume_dc="EU-RO-1")


def test_unknown_class_is_a_config_error_before_anything_is_rented():
    from pistachio_infra.errors import ConfigError

    with pytest.raises(ConfigError, match="a9000"):
        candidate_offers(TYPES, ["a9000"])
