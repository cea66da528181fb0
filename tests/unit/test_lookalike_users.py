from __future__ import annotations

import numpy as np
import pytest

from cascade.lookalike.users import UserSide, UserTable


def table(n: int = 5) -> UserTable:
    rng = np.random.default_rng(0)
    side = UserSide(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 9, (n, 5)), np.array([[0.0], [1.0], [2.0], [0.0], [3.0]]))
    return UserTable(side, np.array([1.0, np.nan, 3.0, 4.0, 5.0]), np.array([1.0, 2.0, np.nan, 4.0, 5.0]))


def test_a_saved_table_loads_the_same(tmp_path) -> None:
    t = table()
    t.save(tmp_path / "users.npz")
    back = UserTable.load(tmp_path / "users.npz")
    for a, b in zip((t.side.embedding, t.side.fields, t.side.activity, t.lat, t.lon),
                    (back.side.embedding, back.side.fields, back.side.activity, back.lat, back.lon)):
        np.testing.assert_array_equal(a, b)
    assert back.located.tolist() == [True, False, False, True, True]
    assert back.behaviour.tolist() == [False, True, True, False, True]
    rows = back.side.rows(np.array([4, 0]))
    assert [r.shape for r in rows] == [(2, 4), (2, 5), (2, 1)] and all(r.flags.c_contiguous for r in rows)


def test_a_table_whose_columns_disagree_is_refused(tmp_path) -> None:
    t = table()
    np.savez(tmp_path / "users.npz", embedding=t.side.embedding, fields=t.side.fields, activity=t.side.activity,
             lat=t.lat[:3], lon=t.lon)
    with pytest.raises(ValueError, match="re-run the export"):
        UserTable.load(tmp_path / "users.npz")
    with pytest.raises(FileNotFoundError):
        UserTable.load(tmp_path / "absent.npz")
