"""Locations: great-circle distance and geohash cells, over numpy arrays of latitudes and longitudes
in degrees."""
from __future__ import annotations

import numpy as np

from cascade.hashing import hash_bucket

EARTH_RADIUS_KM = 6_371.0088
GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
GEOHASH_PRECISIONS = (3, 5)  # cells of about 156 km and 4.9 km: region, then neighbourhood
GEOHASH_SALT = 300  # precision p uses GEOHASH_SALT + p


def check_coordinates(lat: np.ndarray, lon: np.ndarray) -> None:
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ValueError("latitude and longitude must be finite")
    if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise ValueError("latitude must be within [-90, 90] and longitude within [-180, 180]")


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between points (broadcast), float64."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dp, dl = p2 - p1, np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def geohash_cells(lat, lon, precision: int) -> np.ndarray:
    """Each point's geohash cell at `precision` characters as an int64 (5 bits a character, the
    standard bit interleaving: longitude first), so cells compare and hash as numbers.
    `geohash_text` spells one the usual way."""
    if not 1 <= precision <= 12:
        raise ValueError(f"geohash precision must be 1..12, got {precision}")
    check_coordinates(lat, lon)
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    lat_lo, lat_hi = np.full_like(lat, -90.0), np.full_like(lat, 90.0)
    lon_lo, lon_hi = np.full_like(lon, -180.0), np.full_like(lon, 180.0)
    code = np.zeros(np.broadcast(lat, lon).shape, np.int64)
    for bit in range(5 * precision):
        if bit % 2 == 0:
            mid = (lon_lo + lon_hi) / 2
            upper = lon >= mid
            lon_lo, lon_hi = np.where(upper, mid, lon_lo), np.where(upper, lon_hi, mid)
        else:
            mid = (lat_lo + lat_hi) / 2
            upper = lat >= mid
            lat_lo, lat_hi = np.where(upper, mid, lat_lo), np.where(upper, lat_hi, mid)
        code = (code << 1) | upper
    return code


def geohash_buckets(lat: np.ndarray, lon: np.ndarray, buckets: int,
                    precisions: tuple[int, ...] = GEOHASH_PRECISIONS) -> np.ndarray:
    """int64 [n, len(precisions)]: each point's geohash cell per precision hashed into 1..buckets-1,
    0 where the location is unknown (NaN): the models' location fields."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    known = ~(np.isnan(lat) | np.isnan(lon))
    out = np.zeros((len(lat), len(precisions)), np.int64)
    for column, precision in enumerate(precisions):
        cells = geohash_cells(lat[known], lon[known], precision)
        out[known, column] = hash_bucket(cells, GEOHASH_SALT + precision, buckets)
    return out


def geohash_text(cell: int, precision: int) -> str:
    return "".join(GEOHASH_ALPHABET[(int(cell) >> 5 * (precision - 1 - i)) & 31] for i in range(precision))
