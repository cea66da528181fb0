import numpy as np
import pytest

from cascade.geo import geohash_cells, geohash_text, haversine_km


def test_haversine_gives_known_distances_and_broadcasts() -> None:
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.6, abs=0.5)  # Paris - London
    np.testing.assert_allclose(haversine_km(0.0, 0.0, np.array([0.0, 0.0]), np.array([0.0, 1.0])), [0.0, 111.195], atol=0.01)


def test_geohash_spells_the_reference_cell_and_coarser_cells_are_prefixes() -> None:
    cells = {p: geohash_cells(np.array([57.64911]), np.array([10.40744]), p)[0] for p in (4, 5, 11)}
    assert geohash_text(cells[11], 11) == "u4pruydqqvj"  # the geohash reference example
    assert cells[5] >> 5 == cells[4] and geohash_text(cells[5], 5) == "u4pru"


def test_geohash_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="latitude must be within"):
        geohash_cells(np.array([91.0]), np.array([0.0]), 5)
    with pytest.raises(ValueError, match="finite"):
        geohash_cells(np.array([np.nan]), np.array([0.0]), 5)
    with pytest.raises(ValueError, match="precision"):
        geohash_cells(np.array([0.0]), np.array([0.0]), 13)
