"""Signed request ids (`cascade.request_ids`): only the secret's holder makes one, for one user."""
from __future__ import annotations

import pytest

from cascade.request_ids import RequestIds


def test_an_issued_id_is_valid_for_its_user_only_and_under_its_secret_only() -> None:
    ids = RequestIds(b"s" * 32)
    issued = ids.issue(42)
    assert ids.valid(issued, 42)
    assert not ids.valid(issued, 43)  # another user's answer
    assert not RequestIds(b"t" * 32).valid(issued, 42)  # another secret: another deployment
    nonce, tag = issued.split(".")
    assert not ids.valid(f"{nonce}.{'0' * len(tag)}", 42)
    assert not ids.valid(f"{'0' * len(nonce)}.{tag}", 42)
    for malformed in ("", "r", issued + "0", issued.replace(".", ""), f"{nonce}.{tag}.x"):
        assert not ids.valid(malformed, 42), malformed
    assert ids.issue(42) != issued  # a fresh nonce each time


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes or more"):
        RequestIds(b"short")
