"""Experiments: CASCADE_EXPERIMENTS validation and deterministic, weight-proportional arm assignment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cascade.experiments import Arm, Experiment, assign_arms, experiment_salt, parse_experiments
from cascade.settings import SettingsError, load_settings

AB = Experiment("ab", (Arm("a", 1), Arm("b", 3)))


def test_assignment_is_deterministic_across_calls() -> None:
    users = np.arange(5_000)
    first = assign_arms(AB, users)
    assert np.array_equal(first, assign_arms(AB, users))
    assert all(AB.assign(int(u)).name == AB.arms[first[u]].name for u in range(200))


def test_assignment_is_the_same_in_another_process() -> None:
    code = (
        "import json; from cascade.experiments import Arm, Experiment, assign_arms; import numpy as np;"
        "print(json.dumps(assign_arms(Experiment('ab', (Arm('a', 1), Arm('b', 3))), np.arange(500)).tolist()))"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == assign_arms(AB, np.arange(500)).tolist()


def test_salt_is_stable() -> None:
    assert experiment_salt("ab") == experiment_salt("ab") != experiment_salt("ba")
    assert 0 <= experiment_salt("ab") < 2**64


def test_proportions_follow_weights() -> None:
    experiment = Experiment("three", (Arm("x", 1), Arm("y", 2), Arm("z", 7)))
    counts = np.bincount(assign_arms(experiment, np.arange(20_000)), minlength=3) / 20_000
    assert np.allclose(counts, [0.1, 0.2, 0.7], atol=0.015)


def test_experiments_split_independently() -> None:
    users = np.arange(20_000)
    one = assign_arms(Experiment("one", (Arm("a", 1), Arm("b", 1))), users)
    two = assign_arms(Experiment("two", (Arm("a", 1), Arm("b", 1))), users)
    joint = np.bincount(one * 2 + two, minlength=4) / len(users)
    assert np.allclose(joint, 0.25, atol=0.02)


def test_parse_keeps_chains_and_versions() -> None:
    [experiment] = parse_experiments([{"name": "e", "arms": [
        {"name": "a", "weight": 2, "rerank_chain": [{"name": "truncate"}], "model_versions": {"rank": 2}},
        {"name": "b", "weight": 1},
    ]}])
    assert experiment.arms[0] == Arm("a", 2, [{"name": "truncate"}], {"rank": 2})
    assert experiment.arms[1].rerank_chain is None and experiment.arms[1].model_versions is None


@pytest.mark.parametrize(("raw", "message"), [
    ([{"name": "e", "arms": []}], "arms must be a non-empty list"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1}], "extra": 1}], "unknown key(s) ['extra']"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1, "colour": "red"}]}], "unknown key(s) ['colour']"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 0}]}], "weight must be an integer > 0"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}], "duplicate arm name"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1}]}, {"name": "e", "arms": [{"name": "a", "weight": 1}]}],
     "duplicate experiment name 'e'"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1, "rerank_chain": [{"name": "shuffle"}]}]}],
     "unknown rerank operator 'shuffle'"),
    ([{"name": "e", "arms": [{"name": "a", "weight": 1, "model_versions": {"user_tower": 1}}]}], "unknown model(s)"),
])
def test_invalid_experiments_name_the_variable(raw: list, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(experiments=raw)
    assert "CASCADE_EXPERIMENTS" in str(err.value) and message in str(err.value)


def test_experiments_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_EXPERIMENTS", json.dumps([{"name": "e", "arms": [{"name": "a", "weight": 1}]}]))
    assert load_settings().experiments == [{"name": "e", "arms": [{"name": "a", "weight": 1}]}]
    monkeypatch.delenv("CASCADE_EXPERIMENTS")
    assert load_settings().experiments == []
