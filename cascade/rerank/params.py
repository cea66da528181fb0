"""Parameter checks shared by the operators; messages name the operator and the parameter."""
from __future__ import annotations

import numbers


def require_int_at_least(operator: object, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{type(operator).__name__}: {name} must be an integer >= {minimum}, got {value!r}")


def require_in_range(
    operator: object, name: str, value: object, low: float, high: float, *, open_interval: bool = False
) -> None:
    """low <= value <= high, or low < value < high where open_interval."""
    inside = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and (low < float(value) < high if open_interval else low <= float(value) <= high)
    )
    if not inside:
        interval = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ValueError(f"{type(operator).__name__}: {name} must lie in {interval}, got {value!r}")
