"""A sandbox scenario: timings, account, rate limits, stock overrides, faults and the stand-in behaviour knobs.

Written as TOML (`pistachio-infra sandbox up --scenario FILE`); every key is optional:

    [timing]
    provision_s = 0.4        # PROVISIONING -> STARTING (the real cloud: tens of seconds to minutes)
    start_s = 0.3            # least time in STARTING before the pod can be RUNNING (sshd must also answer)

    [account]
    balance_usd = 500.0      # creates need an hour of the pod's cost left (else 402)

    [rate_limit]             # windows of the RateLimit headers; exceeding one answers 429 with Retry-After
    per_minute = 600
    per_hour = 30000
    per_day = 500000

    [stock]                  # override the catalog's free GPUs per data center
    "NVIDIA A40" = { "US-TX-3" = 0 }

    [[faults]]               # see faults.py for every kind and its parameters
    kind = "rate_limit"
    count = 2

    [standin.trainer]        # written to standin-scenario.json (PISTACHIO_STANDIN_SCENARIO on every pod); the keys
    seconds_per_step = 0.05  # and defaults are the stand-ins' (standins/__init__.py DEFAULT_SCENARIO)
    curve = "converge"       # "converge" (falls, bottoms, rises) | "plateau" | "diverge" | "nan"
    noise = 0.01

    [standin.captioner]
    fail_images = ["bad.png"]   # file names or globs whose caption batch fails (the script still exits 0)

The default scenario is realistic but fast: a pod is RUNNING with sshd answering about a second after create.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .faults import FaultError, make_fault_params

CURVES = ("converge", "plateau", "diverge", "nan")  # what the stand-in trainer draws (standins/__init__.py)


@dataclass(frozen=True)
class Timing:
    provision_s: float = 0.4
    start_s: float = 0.3
    tick_s: float = 0.05


@dataclass(frozen=True)
class Account:
    balance_usd: float = 500.0


@dataclass(frozen=True)
class RateLimits:
    per_minute: int = 600
    per_hour: int = 30000
    per_day: int = 500000


@dataclass(frozen=True)
class Scenario:
    timing: Timing = field(default_factory=Timing)
    account: Account = field(default_factory=Account)
    rate_limit: RateLimits = field(default_factory=RateLimits)
    stock: dict[str, dict[str, int]] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    standin: dict[str, dict[str, Any]] = field(default_factory=dict)

    def standin_knobs(self) -> dict[str, dict[str, Any]]:
        """The stand-ins' DEFAULT_SCENARIO with this scenario's [standin.*] tables laid over it."""
        from .standins import DEFAULT_SCENARIO

        knobs = {name: dict(values) for name, values in DEFAULT_SCENARIO.items()}
        for name, values in self.standin.items():
            knobs.setdefault(name, {}).update(values)
        return knobs


# table -> key -> (type, lowest allowed, highest allowed)
_NUMBERS: dict[str, dict[str, tuple[type, float, float]]] = {
    "timing": {"provision_s": (float, 0, 3600), "start_s": (float, 0, 3600), "tick_s": (float, 0.001, 1)},
    "account": {"balance_usd": (float, -1e9, 1e9)},
    "rate_limit": {"per_minute": (int, 1, 1e9), "per_hour": (int, 1, 1e9), "per_day": (int, 1, 1e9)},
}
_TABLES = {"timing": Timing, "account": Account, "rate_limit": RateLimits}
FIX = "fix the scenario file (its keys are documented in pistachio_infra/sandbox/scenario.py)"


def _table(data: Any, name: str, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{name}] must be a table", FIX)
    return data


def _numbers(name: str, data: dict[str, Any], source: str):
    cls = _TABLES[name]
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{source}: [{name}] has unknown key(s) {', '.join(sorted(unknown))}", FIX)
    for key, value in data.items():
        kind, low, high = _NUMBERS[name][key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int:
            ok = ok and float(value).is_integer()
        if not ok or not low <= value <= high:
            raise ConfigError(f"{source}: {name}.{key} = {value!r} is not a {kind.__name__} in [{low:g}, {high:g}]",
                              FIX)
    return cls(**{k: kind(v) for k, v in data.items() for kind in [_NUMBERS[name][k][0]]})


def parse_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    unknown = set(data) - {f.name for f in fields(Scenario)}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(sorted(unknown))}", FIX)
    parts: dict[str, Any] = {}
    for name in _TABLES:
        if name in data:
            parts[name] = _numbers(name, _table(data[name], name, source), source)
    stock = _table(data.get("stock", {}), "stock", source)
    for gpu, per_dc in stock.items():
        if not isinstance(per_dc, dict) or not all(isinstance(n, int) and n >= 0 for n in per_dc.values()):
            raise ConfigError(f"{source}: stock.{gpu!r} must map data centers to GPU counts ≥ 0", FIX)
    faults = data.get("faults", [])
    if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
        raise ConfigError(f"{source}: faults must be an array of tables ([[faults]])", FIX)
    for i, fault in enumerate(faults):
        params = dict(fault)
        kind = params.pop("kind", None)
        if not kind:
            raise ConfigError(f"{source}: faults[{i}] has no kind", 'add kind = "rate_limit" (see faults.py)')
        try:
            make_fault_params(kind, params)
        except FaultError as exc:
            raise ConfigError(f"{source}: faults[{i}]: {exc}", FIX) from None
    standin = _table(data.get("standin", {}), "standin", source)
    for name, values in standin.items():
        _table(values, f"standin.{name}", source)
    scenario = Scenario(**parts, stock=stock, faults=faults, standin=standin)
    curve = scenario.standin_knobs().get("trainer", {}).get("curve")
    if curve not in CURVES:
        raise ConfigError(f"{source}: standin.trainer.curve is {curve!r}", f"use one of {', '.join(CURVES)}")
    return scenario


def load_scenario(path: str | Path | None) -> Scenario:
    """The scenario in TOML file `path`, or the default scenario when `path` is None."""
    if path is None:
        return Scenario()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"scenario file {path} does not exist", "pass an existing TOML file to --scenario") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario file {path} is not valid TOML ({exc})", "fix the TOML syntax") from None
    return parse_scenario(data, str(path))


def write_standin_knobs(scenario: Scenario, path: Path) -> Path:
    """Write the stand-in knobs as JSON (the file every pod gets as PISTACHIO_STANDIN_SCENARIO)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(scenario.standin_knobs(), indent=2, sort_keys=True))
    tmp.replace(path)
    return path
