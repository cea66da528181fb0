"""The item-to-item co-occurrence index, built from the training positives and written as .npz."""
from __future__ import annotations

import time
from pathlib import Path


from cascade.recall.item_to_item import build_item_to_item
from cascade.schema import Interactions
from cascade.settings import Settings


def write_item_to_item(train_log: Interactions, n_items: int, settings: Settings, path: Path) -> dict:
    """Build from `train_log`'s positives (sorted by user, time), save to `path`; the manifest entry."""
    started = time.perf_counter()
    positive = train_log.label > 0.5
    index = build_item_to_item(
        train_log.user[positive], train_log.item[positive], n_items,
        settings.recall_i2i_window, settings.recall_i2i_neighbours,
    )
    index.save(path)
    entry = {
        "file": path.name, "window": settings.recall_i2i_window, "neighbours": settings.recall_i2i_neighbours,
        "items_with_neighbours": int((index.neighbours[:, 0] >= 0).sum()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    print(f"item-to-item: {entry['items_with_neighbours']}/{n_items} items with neighbours "
          f"in {entry['seconds']:.2f}s -> {path}")
    return entry
