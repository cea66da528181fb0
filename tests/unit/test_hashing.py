"""hash_bucket / splitmix64: range, the padding bucket, a reference implementation, determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import cascade
from cascade.hashing import hash_bucket, splitmix64

MASK = (1 << 64) - 1
IDS = [0, 1, 2, 3, 17, 99, 12_345, 2**40, 2**62]


def reference_splitmix64(value: int, salt: int) -> int:
    """Textbook splitmix64 finaliser in plain Python integers, state = value + salt * golden."""
    x = (value + salt * 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def test_splitmix64_matches_the_published_first_output_for_seed_zero() -> None:
    # splitmix64 seeded with 0 first advances the state by the golden gamma: value 0, salt 1.
    assert int(splitmix64(np.array([0]), 1)[0]) == 0xE220A8397B1DCDAF


def test_splitmix64_matches_a_plain_python_reference() -> None:
    for salt in (0, 1, 101, 202):
        got = splitmix64(np.array(IDS, dtype=np.int64), salt)
        assert got.dtype == np.uint64
        assert [int(v) for v in got] == [reference_splitmix64(v, salt) for v in IDS]


def test_hash_bucket_is_the_reference_modulo_buckets_minus_one_plus_one() -> None:
    got = hash_bucket(np.array(IDS), salt=101, buckets=1_009)
    assert got.dtype == np.int64
    assert got.tolist() == [reference_splitmix64(v, 101) % 1_008 + 1 for v in IDS]


def test_non_negative_ids_land_in_1_to_buckets_minus_1() -> None:
    ids = np.arange(0, 5_000)
    for buckets in (2, 3, 11, 1_009):
        got = hash_bucket(ids, salt=7, buckets=buckets)
        assert got.min() >= 1 and got.max() <= buckets - 1
    # With 2 buckets the only non-padding bucket is 1.
    assert set(hash_bucket(ids, salt=7, buckets=2).tolist()) == {1}
    # With many ids every bucket 1..10 is used.
    assert set(hash_bucket(ids, salt=7, buckets=11).tolist()) == set(range(1, 11))


def test_negative_ids_map_to_the_zero_bucket() -> None:
    got = hash_bucket(np.array([-1, 5, -2, -(2**40), 0]), salt=3, buckets=50)
    assert got[[0, 2, 3]].tolist() == [0, 0, 0]
    assert got[1] > 0 and got[4] > 0


def test_different_salts_give_different_buckets() -> None:
    ids = np.arange(1_000)
    a = hash_bucket(ids, salt=101, buckets=100_003)
    b = hash_bucket(ids, salt=102, buckets=100_003)
    # Independent hashes into 100k buckets agree on a given id with probability ~1e-5.
    assert (a != b).mean() > 0.99


def test_hash_bucket_accepts_lists_and_scalars_shape_preserving() -> None:
    grid = hash_bucket(np.array([[1, 2], [-1, 3]]), salt=1, buckets=97)
    assert grid.shape == (2, 2)
    assert grid[1, 0] == 0
    assert hash_bucket([1, 2], salt=1, buckets=97).tolist() == grid[0].tolist()


def test_hashes_are_identical_in_a_process_with_another_hash_seed() -> None:
    code = (
        "import json, sys, numpy as np\n"
        "from cascade.hashing import hash_bucket\n"
        "ids = np.array(json.loads(sys.argv[1]))\n"
        "print(json.dumps({s: hash_bucket(ids, s, 100_003).tolist() for s in (101, 102, 200)}))\n"
    )
    repo_root = Path(cascade.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(repo_root)}
    ids = [*IDS, -1]
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ids)], env=env, capture_output=True, text=True, check=True
    )
    theirs = json.loads(result.stdout)
    ours = {str(s): hash_bucket(np.array(ids), s, 100_003).tolist() for s in (101, 102, 200)}
    assert theirs == ours
