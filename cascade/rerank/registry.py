"""The one name -> operator table that configuration refers to, and the chain builder.

Every operator returns at most k items; filters (dedup, exclude_categories, cap_per_category) may
return fewer, and the chain's final `truncate` then returns what is left: nothing is invented.
"""
from __future__ import annotations

from typing import Any

from cascade.rerank.base import RerankOperator
from cascade.rerank.cover import CoverCategories
from cascade.rerank.dedup import DropDuplicateItems
from cascade.rerank.dpp import DiversifyByDPP
from cascade.rerank.filters import ExcludeCategories
from cascade.rerank.max_per_category import CapPerCategory
from cascade.rerank.mmr import DiversifyByMMR
from cascade.rerank.scatter import ScatterCategories
from cascade.rerank.truncate import TruncateToK

OPERATORS: dict[str, type] = {
    "dedup": DropDuplicateItems,
    "exclude_categories": ExcludeCategories,
    "cap_per_category": CapPerCategory,
    "scatter": ScatterCategories,
    "cover_categories": CoverCategories,
    "mmr": DiversifyByMMR,
    "dpp": DiversifyByDPP,
    "truncate": TruncateToK,
}


def build_chain(spec: list[dict[str, Any]]) -> list[RerankOperator]:
    """Operators from [{"name": "mmr", "lam": 0.5}, {"name": "truncate"}, ...], in order."""
    chain = []
    for entry in spec:
        params = dict(entry)
        name = params.pop("name", None)
        if name not in OPERATORS:
            raise ValueError(f"unknown rerank operator {name!r}; known: {sorted(OPERATORS)}")
        try:
            chain.append(OPERATORS[name](**params))
        except (TypeError, ValueError) as error:
            raise ValueError(f"rerank operator {name!r}: bad parameters {params}: {error}") from error
    return chain
