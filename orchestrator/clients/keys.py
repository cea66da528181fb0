"""Every Redis key the orchestrator writes, laid out so that it runs unchanged on Redis Cluster.

A cluster puts each key on the node owning its hash slot, and a pipeline, transaction or Lua script
can only work on one node (a script: one slot). So a user's keys carry one hash tag, `{u<user id>}`
(the slot is hashed from the text inside the first braces): the funnel's read of a user and its
write after an answer (one pipelined round trip each, `orchestrator.clients.exposure`) and the
feedback script applying one user's events (`orchestrator.clients.feedback`) each stay on one node.
That covers both exposure buffers, the live clicks sequence, the labels of the user's answers and
the claims of the user's event ids (so an event id is unique per user).

Trending's sorted set and its epoch share the tag `{trending}`: they are read in one transaction
(`orchestrator.recall`) and rolled together by the feedback script, which claims the clicks it
weighs under that tag too. The rest is one key per command: the samples stream, the operator board,
the rate-limit buckets, and the look-alike keys: the users' places (one GEO set, so one GEOSEARCH
reads it), the set of users with new clicks, and each live user's embedding under the user's tag.
"""
from __future__ import annotations

SAMPLES = "cascade:samples"  # stream: one served sample per answer (XADD)
POPULAR = "cascade:{trending}:popular"  # trending clicks per item, relative to the epoch (cascade.recall.popular)
POPULAR_EPOCH = "cascade:{trending}:epoch"  # the epoch trending's scores are relative to (unix seconds, a float)


def user_tag(user_id: int) -> str:
    return f"{{u{user_id}}}"


def short_exposure(user_id: int) -> str:
    """Sorted set: what the funnel served the user (member = item, score = unix seconds)."""
    return f"cascade:exposure:short:{user_tag(user_id)}"


def long_exposure(user_id: int) -> str:
    """Sorted set: the impressions and clicks the client reported."""
    return f"cascade:exposure:long:{user_tag(user_id)}"


def sequence(user_id: int) -> str:
    """List: the user's live clicks, most recent first (LPUSH)."""
    return f"cascade:seq:{user_tag(user_id)}"


def labels(user_id: int, request_id: str) -> str:
    """Hash: "<label>:<item>" -> count or dwell ms, of the answer `request_id` gave the user."""
    return f"cascade:labels:{user_tag(user_id)}:{request_id}"


def event_claim(user_id: int, event_id: str) -> str:
    """String: the call that applied the user's event `event_id` (its token), for the dedup TTL."""
    return f"cascade:feedback:event:{user_tag(user_id)}:{event_id}"


def trending_claim(user_id: int, event_id: str) -> str:
    """String: the call that added the user's click `event_id` to trending (on trending's node)."""
    return f"cascade:feedback:trending:{{trending}}:{user_id}:{event_id}"


PLACES = "cascade:lookalike:places"  # GEO set: member = user id (orchestrator.clients.audience)
PLACES_LOADED = "cascade:lookalike:places:loaded"  # string: the users' table the GEO set was filled from
LIVE_USERS = "cascade:lookalike:live"  # set: users with clicks not yet re-embedded


def live_embedding(user_id: int) -> str:
    """String: the user's float32 embedding re-computed from live clicks, with a TTL."""
    return f"cascade:lookalike:embedding:{user_tag(user_id)}"
