"""The sandbox's GPU catalog (data centers, GPU types, seed prices, stock), loaded from catalog.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

CATALOG_PATH = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class DataCenter:
    id: str
    name: str
    region: str
    country: str
    cuda: str  # CUDA version every machine there reports
    volume_types: tuple[str, ...]
    compliance: tuple[str, ...]
    global_network: bool

    @property
    def supports_volumes(self) -> bool:
        return bool(self.volume_types)


@dataclass(frozen=True)
class GpuOffer:
    id: str
    name: str
    manufacturer: str
    memory: int
    cuda_cores: int
    max_count: int
    secure: float  # seed USD per GPU-hour, on-demand
    community: float
    min_bid: float  # lowest accepted spot bid per GPU-hour
    pool: str | None = None
    stock: dict[str, int] = field(default_factory=dict)  # data center -> SECURE GPUs in the seed (before use)
    community_stock: dict[str, int] = field(default_factory=dict)  # the same for COMMUNITY machines

    def price(self, cloud: str) -> float:
        return self.community if cloud == "COMMUNITY" else self.secure


@dataclass(frozen=True)
class CpuFlavor:
    """A CPU pod flavour (REST v2 CpuType): vCPUs from `vcpu_min` to `vcpu_max` (powers of two), RAM per vCPU,
    a seed price per vCPU-hour, and free vCPUs per data center (SECURE cloud only)."""

    id: str
    name: str
    group: str
    vcpu_min: int
    vcpu_max: int
    ram_gb_per_vcpu: float
    secure_per_vcpu: float
    serverless_per_vcpu: float
    disk_limit_per_vcpu: int = 10
    stock: dict[str, int] = field(default_factory=dict)  # data center -> free vCPUs in the seed (before use)


@dataclass(frozen=True)
class Catalog:
    datacenters: dict[str, DataCenter]
    gpus: dict[str, GpuOffer]
    cpus: dict[str, CpuFlavor] = field(default_factory=dict)


def availability_level(free: int) -> str:
    """REST v2 AvailabilityLevel for a count of free GPUs."""
    if free <= 0:
        return "NONE"
    if free <= 2:
        return "LOW"
    if free <= 6:
        return "MEDIUM"
    return "HIGH"


def stock_status(free: int) -> str:
    """GraphQL `lowestPrice.stockStatus` ("High" | "Medium" | "Low" | "None")."""
    return availability_level(free).capitalize()


def cuda_key(version: str) -> tuple[int, ...]:
    """'12.11' > '12.2': compare CUDA versions numerically."""
    return tuple(int(part) for part in version.split("."))


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    dcs = {
        d["id"]: DataCenter(
            id=d["id"],
            name=d["name"],
            region=d["region"],
            country=d["country"],
            cuda=d["cuda"],
            volume_types=tuple(d.get("volume_types", ())),
            compliance=tuple(d.get("compliance", ())),
            global_network=bool(d.get("global_network", False)),
        )
        for d in raw["datacenters"]
    }
    gpus = {}
    for g in raw["gpus"]:
        unknown = (set(g.get("stock", {})) | set(g.get("community_stock", {}))) - set(dcs)
        if unknown:
            raise ValueError(f"{path}: GPU {g['id']!r} has stock in unknown data centers {sorted(unknown)}")
        gpus[g["id"]] = GpuOffer(**g)
    cpus = {}
    for c in raw.get("cpus", []):
        unknown = set(c.get("stock", {})) - set(dcs)
        if unknown:
            raise ValueError(f"{path}: CPU flavour {c['id']!r} has stock in unknown data centers {sorted(unknown)}")
        cpus[c["id"]] = CpuFlavor(**c)
    return Catalog(datacenters=dcs, gpus=gpus, cpus=cpus)
