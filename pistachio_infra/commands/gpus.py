"""`gpus`: the GPU classes with their RunPod id, VRAM, training profile and price.

Prices come from a `PriceSource`: the catalog's hints by default. A live source (RunPod prices and stock) plugs
in through `live_price_source()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..catalog import GpuClass


@dataclass(frozen=True)
class PriceQuote:
    usd_per_hr: float | None
    source: str  # "hint" or where a live price came from
    stock: str | None = None  # e.g. "HIGH", "LOW", "NONE"; None when unknown


PriceSource = Callable[[list["GpuClass"]], dict[str, PriceQuote]]


def hint_prices(classes: list[GpuClass]) -> dict[str, PriceQuote]:
    return {c.name: PriceQuote(c.price_hint_usd_hr, "hint") for c in classes}


def live_price_source() -> PriceSource:
    """Live prices and stock from the RunPod API (or the sandbox): per class, the on-demand price and the best
    stock over data centers, with how many data centers have any."""
    from ..endpoints import resolve_cloud
    from ..pods.offers import STOCK_RANK, live_offers
    from ..runpod import connect
    from ..runpod.port import Stock

    def source(classes: list[GpuClass]) -> dict[str, PriceQuote]:
        offers = live_offers(connect(resolve_cloud()), [c.name for c in classes])
        quotes: dict[str, PriceQuote] = {}
        for c in classes:
            mine = [o for o in offers if o.gpu_class == c.name]
            if not mine:
                quotes[c.name] = PriceQuote(None, "live", "not offered")
                continue
            best = max((o.stock for o in mine), key=lambda s: STOCK_RANK[s])
            with_stock = sum(1 for o in mine if o.stock != Stock.NONE)
            where = f" in {with_stock}/{len(mine)} DCs" if mine[0].data_center_id else ""
            quotes[c.name] = PriceQuote(mine[0].price_per_hr, "live", f"{best.value}{where}")
        return quotes

    return source


def gpu_rows(classes: list[GpuClass], quotes: dict[str, PriceQuote]) -> list[list[str]]:
    from ..catalog import profile_for

    rows = []
    for c in classes:
        p = profile_for(c)
        profile = (
            f"{p.tier} GB: {p.micro_batch}×{p.grad_accum}, {p.transformer_dtype}"
            + (f", swap {p.blocks_to_swap}" if p.blocks_to_swap else "")
            + f", {p.optimizer}"
        )
        q = quotes.get(c.name)
        price = "?" if q is None or q.usd_per_hr is None else f"${q.usd_per_hr:.2f}/h"
        if q is not None and q.source == "hint":
            price += " (hint)"
        row = [c.name, c.gpu_type_id, f"{c.vram_gb} GB", profile, price]
        if any(q.stock for q in quotes.values()):
            row.append((q.stock if q else None) or "?")
        rows.append(row)
    return rows


@click.command()
@click.option("--live", is_flag=True, help="Current RunPod prices and stock instead of the catalog's hints.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document on stdout) instead of the table.")
def gpus(live: bool, as_json: bool) -> None:
    """List GPU classes with VRAM, training profile and price."""
    from rich.table import Table

    from ..catalog import gpu_classes
    from ..console import make_console

    classes = list(gpu_classes().values())
    source: PriceSource = live_price_source() if live else hint_prices
    quotes = source(classes)
    if as_json:
        from ..jsonout import emit

        emit({"live": live, "classes": [_gpu_json(c, quotes.get(c.name)) for c in classes]})
        return
    rows = gpu_rows(classes, quotes)
    table = Table(title="GPU classes (profile: micro batch × accumulation, base dtype, block swap, optimizer)")
    for column in ("class", "RunPod GPU type id", "VRAM", "training profile", "price"):
        table.add_column(column)
    if rows and len(rows[0]) > 5:
        table.add_column("stock")
    for row in rows:
        table.add_row(*row)
    make_console().print(table)


def _gpu_json(c: Any, q: Any) -> dict[str, Any]:
    from ..catalog import profile_for

    p = profile_for(c)
    return {"class": c.name, "gpu_type_id": c.gpu_type_id, "vram_gb": c.vram_gb, "tier_gb": p.tier,
            "profile": {"micro_batch": p.micro_batch, "grad_accum": p.grad_accum,
                        "transformer_dtype": p.transformer_dtype, "blocks_to_swap": p.blocks_to_swap,
                        "optimizer": p.optimizer},
            "usd_per_hr": q.usd_per_hr if q is not None else None,
            "price_source": q.source if q is not None else None,
            "stock": q.stock if q is not None else None}
