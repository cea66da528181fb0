import numpy as np

from cascade.geo import geohash_buckets, haversine_km
from export.locations import CITIES, synthetic_locations, zip_centroids
from export.synthetic import generate


def test_zip_codes_map_to_their_centroids_and_unknown_ones_stay_unknown() -> None:
    located = zip_centroids(np.array(["85711", "10001", "T8H1N", "00000", "02154"]))
    assert haversine_km(located.lat[0], located.lon[0], 32.22, -110.93) < 15  # Tucson
    assert haversine_km(located.lat[1], located.lon[1], 40.75, -73.99) < 5  # Manhattan
    assert located.known.tolist() == [True, True, False, False, True]
    assert haversine_km(located.lat[4], located.lon[4], 42.37, -71.1) < 40  # a retired Waltham zip: the 021xx mean


def test_synthetic_users_cluster_in_cities_that_follow_their_taste() -> None:
    data = generate(600, 400, 20_000, 8, seed=3)
    train = data.interactions.ts < np.quantile(data.interactions.ts, 0.8)
    located = synthetic_locations(data, train, seed=3)
    assert located.known.all()
    cells = geohash_buckets(located.lat, located.lon, 1_009, precisions=(3,))[:, 0]
    assert len(np.unique(cells)) <= 2 * CITIES  # clustered: a few cells, not one per user
    log = data.interactions
    liked = train & (log.label > 0.5)
    favourite = np.array([np.bincount(data.item_category[log.item[liked & (log.user == u)]], minlength=8).argmax()
                          for u in range(600)])
    same_city = cells[:, None] == cells[None, :]
    same_taste = favourite[:, None] == favourite[None, :]
    assert same_city[same_taste].mean() > 3 * same_city[~same_taste].mean()  # taste and place correlate
    again = synthetic_locations(data, train, seed=3)
    assert np.array_equal(again.lat, located.lat)


def test_geohash_buckets_give_unknown_locations_bucket_zero() -> None:
    buckets = geohash_buckets(np.array([40.75, np.nan, 40.7501]), np.array([-73.99, 1.0, -73.9901]), 101)
    assert buckets.shape == (2 + 1, 2) and (buckets[1] == 0).all() and (buckets[[0, 2]] > 0).all()
    assert (buckets[0] == buckets[2]).all()  # 15 m apart: the same cells
