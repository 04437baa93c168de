"""Live offers (price and stock per GPU class and data center) and the order in which to try them.

RunPod's REST v2 create takes a single GPU type and no fallback list, so the fallback is ours: the user's ordered
GPU classes, and within a class the data centers with stock (best stock first, or the user's order). A pod that
mounts a network volume can only be placed in the volume's data center.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..catalog import GpuClass, gpu_class
from ..runpod.port import GpuType, NoCapacityError, RunPodApi, Stock

STOCK_RANK = {Stock.HIGH: 3, Stock.MEDIUM: 2, Stock.LOW: 1, Stock.NONE: 0}


@dataclass(frozen=True)
class Offer:
    gpu_class: str  # our class name, e.g. "a6000"
    gpu_type_id: str  # RunPod's id, e.g. "NVIDIA RTX A6000"
    data_center_id: str | None  # None: RunPod picks (no per-data-center data)
    price_per_hr: float | None  # live on-demand price per GPU-hour; None when RunPod gave none
    stock: Stock
    vram_gb: int
    min_memory_gb: int

    @property
    def where(self) -> str:
        return f"{self.gpu_class} in {self.data_center_id or 'any data center'}"


def live_offers(api: RunPodApi, class_names: Sequence[str] | None = None, *, cloud_type: str = "SECURE") -> list[Offer]:
    """One offer per (class, data center) from the live API, stock NONE included (for display)."""
    from ..catalog import gpu_classes

    classes = [gpu_class(n) for n in class_names] if class_names else list(gpu_classes().values())
    by_id = {g.id: g for g in api.list_gpu_types()}
    offers: list[Offer] = []
    for cls in classes:
        gt = by_id.get(cls.gpu_type_id)
        if gt is None:
            continue
        offers.extend(_offers_for(cls, gt, cloud_type))
    return offers


def candidate_offers(
    gpu_types: Sequence[GpuType],
    class_names: Sequence[str],
    *,
    data_centers: Sequence[str] = (),
    volume_dc: str | None = None,
    cloud_type: str = "SECURE",
) -> list[Offer]:
    """The offers to try, in order: the user's classes in their order; within a class, the data centers with
    stock, in the user's order when given, else best stock first. Raises NoCapacityError when none has stock."""
    by_id = {g.id: g for g in gpu_types}
    candidates: list[Offer] = []
    seen: list[str] = []
    for name in class_names:
        cls = gpu_class(name)
        gt = by_id.get(cls.gpu_type_id)
        if gt is None:
            seen.append(f"{cls.name}: not offered")
            continue
        offers = [o for o in _offers_for(cls, gt, cloud_type) if o.stock != Stock.NONE]
        if volume_dc:
            offers = [o for o in offers if o.data_center_id in (volume_dc, None)]
            offers = [o if o.data_center_id else _with_dc(o, volume_dc) for o in offers]
        if data_centers:
            order = {dc: i for i, dc in enumerate(data_centers)}
            offers = [o for o in offers if o.data_center_id is None or o.data_center_id in order]
            offers.sort(key=lambda o: order.get(o.data_center_id or "", len(order)))
        else:
            offers.sort(key=lambda o: (-STOCK_RANK[o.stock], o.data_center_id or ""))
        seen.append(f"{cls.name}: {len(offers)} data center(s) with stock")
        candidates.extend(offers)
    if not candidates:
        where = f" in {volume_dc} (the network volume's data center)" if volume_dc else ""
        raise NoCapacityError(
            f"no stock for {', '.join(class_names)}{where} ({'; '.join(seen)})",
            "add fallback classes (`train --gpu a6000,auto`, `up --gpu-fallback CLASS`, or gpu = [...] in the job), "
            "allow other data centers, use --no-volume, or retry later",
        )
    return candidates


def _offers_for(cls: GpuClass, gt: GpuType, cloud_type: str) -> list[Offer]:
    price = gt.community_price if cloud_type == "COMMUNITY" else gt.secure_price
    base = dict(
        gpu_class=cls.name,
        gpu_type_id=gt.id,
        price_per_hr=price,
        vram_gb=gt.memory_gb or cls.vram_gb,
        min_memory_gb=cls.min_system_ram_gb,
    )
    if not gt.data_centers:
        return [Offer(data_center_id=None, stock=gt.stock, **base)]
    return [Offer(data_center_id=dc.data_center_id, stock=dc.stock, **base) for dc in gt.data_centers]


def _with_dc(offer: Offer, dc: str) -> Offer:
    from dataclasses import replace

    return replace(offer, data_center_id=dc)
