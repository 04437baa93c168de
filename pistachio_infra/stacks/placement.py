"""Which RunPod GPU types a list of GPU classes means, and which data center has them in stock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import ConfigError, PistachioError
from ..runpod.port import GpuType, Stock

_STOCK_RANK = {Stock.NONE: 0, Stock.LOW: 1, Stock.MEDIUM: 2, Stock.HIGH: 3}


def resolve_gpu_type_ids(names: Iterable[str]) -> list[str]:
    """GPU class names (catalog: "a6000", "4090", …) or exact RunPod GPU type ids ("NVIDIA RTX A6000") → ids."""
    from .. import catalog

    ids: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if name.lower() in catalog.gpu_classes():
            found = catalog.gpu_class(name).gpu_type_ids
        elif " " in name or catalog.class_for_gpu_type_id(name):
            found = (name,)  # a RunPod id as such
        else:
            catalog.gpu_class(name)  # raises the ConfigError that lists the classes
            found = ()
        ids += [i for i in found if i not in ids]
    if not ids:
        raise ConfigError("no GPU class given for the environment", "pass --gpu CLASS (see `pistachio-infra gpus`)")
    return ids


def default_gpu_names() -> list[str]:
    from .. import catalog

    return catalog.class_names()


def pick_data_center(gpu_types: Sequence[GpuType], wanted_ids: Sequence[str]) -> str:
    """The data center where most of the wanted GPU types have stock (then: best total stock; then: by name)."""
    scores: dict[str, tuple[int, int]] = {}
    for gpu in gpu_types:
        if gpu.id not in wanted_ids:
            continue
        for dc in gpu.data_centers:
            rank = _STOCK_RANK.get(dc.stock, 0)
            if rank:
                kinds, total = scores.get(dc.data_center_id, (0, 0))
                scores[dc.data_center_id] = (kinds + 1, total + rank)
    if not scores:
        raise PistachioError(
            f"no data center has any of {', '.join(wanted_ids)} in stock right now",
            "try other GPU classes (--gpu) or name a data center with --data-center",
        )
    return min(scores, key=lambda dc: (-scores[dc][0], -scores[dc][1], dc))
