"""Which recall channels run, in what priority, with what quotas: one TOML file, read at start and on reload.

    [[channel]]              # priority = file order; an item belongs to the first channel that takes it
    name = "ann"             # quota omitted: CASCADE_RECALL_ANN_K
    [[channel]]
    name = "item_to_item"
    quota = 200
    recent = 5               # the last 5 history items vote ...
    decay = 0.8              # ... with weight decay ** age
    [[channel]]
    name = "popular"         # quota omitted: CASCADE_RECALL_POPULAR_K

    [explore]
    new_items = 0            # slots for items with no training positive, for known users

    [cold_start]             # users the export never saw
    channels = ["popular"]
    explore_new_items = 5

Errors are ValueErrors that name the file and the field.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHANNELS = ("ann", "item_to_item", "popular")
EXPLORE = "explore"  # the provenance of exploration slots


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    quota: int | None = None  # None: the settings' default for the channel
    recent: int = 5  # item_to_item only
    decay: float = 0.8  # item_to_item only


@dataclass(frozen=True)
class RecallConfig:
    channels: tuple[ChannelSpec, ...]
    cold_start_channels: tuple[str, ...] = ("popular",)
    cold_start_explore: int = 0
    explore_new_items: int = 0
    source: str = "<defaults>"

    def channel(self, name: str) -> ChannelSpec | None:
        return next((c for c in self.channels if c.name == name), None)

    def quotas(self, defaults: dict[str, int]) -> dict[str, int]:
        """Each configured channel's quota, `defaults[name]` where the file gives none."""
        return {c.name: c.quota if c.quota is not None else defaults.get(c.name, 0) for c in self.channels}


def _int(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _unknown_keys(where: str, table: dict, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def parse_recall_config(data: dict, source: str = "<dict>") -> RecallConfig:
    _unknown_keys(source, data, {"channel", "explore", "cold_start"})
    raw = data.get("channel")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{source}: at least one [[channel]] table is required")
    specs: list[ChannelSpec] = []
    for i, table in enumerate(raw):
        where = f"{source}: channel[{i}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table")
        _unknown_keys(where, table, {"name", "quota", "recent", "decay"})
        name = table.get("name")
        if name not in CHANNELS:
            raise ValueError(f"{where}.name must be one of {list(CHANNELS)}, got {name!r}")
        if any(s.name == name for s in specs):
            raise ValueError(f"{where}.name: channel {name!r} is listed twice")
        quota = table.get("quota")
        decay = table.get("decay", 0.8)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
            raise ValueError(f"{where}.decay must be a number in (0, 1], got {decay!r}")
        specs.append(ChannelSpec(
            name=name,
            quota=None if quota is None else _int(f"{where}.quota", quota, 0),
            recent=_int(f"{where}.recent", table.get("recent", 5), 1),
            decay=float(decay),
        ))
    explore = data.get("explore", {})
    cold = data.get("cold_start", {})
    for key, table in (("explore", explore), ("cold_start", cold)):
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{key}] must be a table")
    _unknown_keys(f"{source}: [explore]", explore, {"new_items"})
    _unknown_keys(f"{source}: [cold_start]", cold, {"channels", "explore_new_items"})
    names = [s.name for s in specs]
    cold_channels = cold.get("channels", [n for n in names if n == "popular"])
    if not isinstance(cold_channels, list) or any(c not in names for c in cold_channels):
        raise ValueError(f"{source}: cold_start.channels must list configured channels {names}, got {cold_channels!r}")
    return RecallConfig(
        channels=tuple(specs),
        cold_start_channels=tuple(cold_channels),
        cold_start_explore=_int(f"{source}: cold_start.explore_new_items", cold.get("explore_new_items", 0), 0),
        explore_new_items=_int(f"{source}: explore.new_items", explore.get("new_items", 0), 0),
        source=source,
    )


def load_recall_config(path: Path) -> RecallConfig:
    """Read and check the file; ValueError (naming the file and field) on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: recall config not found (CASCADE_RECALL_CONFIG)") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: invalid TOML: {err}") from None
    return parse_recall_config(data, str(path))
