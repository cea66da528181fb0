"""Where users live: latitude and longitude per user (NaN where unknown), for the look-alike
scorer's geohash fields and, later, Redis GEO.

* **MovieLens-100k** users give a zip code. Its centroid comes from the `zipcodes` wheel (US zip
  coordinates inside the package, no download). A zip the wheel lacks (retired ones, such as a few
  Massachusetts 021xx) takes the mean centroid of the wheel's zips sharing its first three digits;
  the rest (Canadian postcodes, `00000`) stay unknown. A point at (0, 0) is the wheel's mark for a
  zip without one and counts as missing.
* **Synthetic** users live in `CITIES` clustered cities. A user's city follows their favourite
  category in training (`CITY_FOLLOWS_TASTE` of users; the others anywhere), so place and taste
  correlate, as the issue asks; each user sits a few km from the city centre. The draw has its own
  random stream, so the rest of the synthetic data is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade.schema import Dataset
from cascade.settings import Settings

CITIES = 24
CITY_FOLLOWS_TASTE = 0.7
CITY_SPREAD_DEG = 0.03  # about 3 km
LOCATION_SALT = 0x10CA7E


@dataclass(frozen=True)
class Locations:
    lat: np.ndarray  # float64 [users], NaN: unknown
    lon: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.lat)


def zip_centroids(zip_codes: np.ndarray) -> Locations:
    """Each zip code's centroid from the `zipcodes` wheel; a zip the wheel lacks takes the mean of the
    wheel's zips with its first three digits."""
    import zipcodes

    lat, lon = np.full(len(zip_codes), np.nan), np.full(len(zip_codes), np.nan)
    for i, code in enumerate(zip_codes):
        match = zipcodes.matching(code) if len(code) == 5 and code.isdigit() else []
        if match and (float(match[0]["lat"]), float(match[0]["long"])) != (0.0, 0.0):  # (0, 0): the wheel has no point
            lat[i], lon[i] = float(match[0]["lat"]), float(match[0]["long"])
    for i in np.flatnonzero(np.isnan(lat)):
        code = zip_codes[i]
        if len(code) == 5 and code.isdigit():
            points = np.array([(float(z["lat"]), float(z["long"])) for z in zipcodes.similar_to(code[:3])]).reshape(-1, 2)
            points = points[(points != 0.0).any(axis=1)]
            if len(points):
                lat[i], lon[i] = points.mean(axis=0)
    return Locations(lat, lon)


def synthetic_locations(dataset: Dataset, train: np.ndarray, seed: int) -> Locations:
    """Clustered cities; most users live in the city of their favourite category in training."""
    rng = np.random.default_rng([seed, LOCATION_SALT])
    centres = np.stack([rng.uniform(30.0, 45.0, CITIES), rng.uniform(-120.0, -75.0, CITIES)], axis=1)
    log = dataset.interactions
    liked = train & (log.label > 0.5)
    counts = np.zeros((dataset.n_users, dataset.n_categories))
    np.add.at(counts, (log.user[liked], dataset.item_category[log.item[liked]]), 1.0)
    favourite = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), rng.integers(0, dataset.n_categories, dataset.n_users))
    city = np.where(rng.random(dataset.n_users) < CITY_FOLLOWS_TASTE, favourite % CITIES, rng.integers(0, CITIES, dataset.n_users))
    spread = rng.normal(scale=CITY_SPREAD_DEG, size=(dataset.n_users, 2))
    return Locations(centres[city, 0] + spread[:, 0], centres[city, 1] + spread[:, 1])


def user_locations(settings: Settings, dataset: Dataset, train: np.ndarray) -> Locations:
    if settings.data_source == "movielens":
        from export.movielens import load_zip_codes

        return zip_centroids(load_zip_codes(settings.cache_dir))
    return synthetic_locations(dataset, train, settings.seed)
