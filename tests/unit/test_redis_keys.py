"""Redis keys laid out for a cluster: a user's keys on one slot, trending's on one, users spread out."""
from __future__ import annotations

from redis.crc import key_slot

from orchestrator.clients import keys


def slot(key: str) -> int:
    return key_slot(key.encode())


def user_keys(user: int) -> list[str]:
    return [
        keys.short_exposure(user), keys.long_exposure(user), keys.sequence(user),
        keys.labels(user, "abc.def"), keys.event_claim(user, "e-1"),
    ]


def test_every_key_of_a_user_hashes_to_the_users_slot() -> None:
    for user in (0, 1, 7, 4_999, 2**63 - 1):
        assert {slot(k) for k in user_keys(user)} == {slot(f"{{u{user}}}")}


def test_event_ids_with_braces_stay_in_the_users_slot() -> None:
    """Only the first {...} is the hash tag: a client's event id cannot move a claim off its user's node."""
    assert slot(keys.event_claim(3, "{evil}")) == slot(keys.sequence(3))
    assert slot(keys.trending_claim(3, "{evil}")) == slot(keys.POPULAR)


def test_trending_keys_and_claims_share_one_slot() -> None:
    assert {slot(keys.POPULAR), slot(keys.POPULAR_EPOCH), slot(keys.trending_claim(9, "e"))} == {slot("{trending}")}


def test_users_spread_over_the_slots() -> None:
    slots = {slot(keys.sequence(user)) for user in range(1_000)}
    assert len(slots) > 900  # 16,384 slots: a thousand users rarely share one
    thirds = [sum(1 for s in slots if lo <= s < lo + 16_384 // 3 + 1) for lo in (0, 5_461, 10_922)]
    assert min(thirds) > 250  # three nodes would each hold about a third
