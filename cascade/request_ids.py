"""Request ids the server signs, so that feedback labels are kept only for answers it gave.

An id is `<nonce>.<tag>`: 24 random hex digits, and the first 32 hex digits of
HMAC-SHA256(secret, "<nonce>:<user id>"). Only a holder of the secret can make one, and one is good
for the user it was issued to alone, so a client cannot label answers it never got, nor another
user's. Every process and replica that serves or takes feedback must share the secret
(CASCADE_REQUEST_ID_SECRET; the local stack keeps one under its run directory).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_HEX = 24
TAG_HEX = 32


class RequestIds:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError(f"a request-id secret needs 16 bytes or more, got {len(secret)}")
        self._secret = secret

    def _tag(self, nonce: str, user_id: int) -> str:
        return hmac.new(self._secret, f"{nonce}:{user_id}".encode(), hashlib.sha256).hexdigest()[:TAG_HEX]

    def issue(self, user_id: int) -> str:
        nonce = secrets.token_hex(NONCE_HEX // 2)
        return f"{nonce}.{self._tag(nonce, user_id)}"

    def valid(self, request_id: str, user_id: int) -> bool:
        """Whether `request_id` is one this secret issued to `user_id` (in constant time for the tag)."""
        nonce, dot, tag = request_id.partition(".")
        if not dot or len(nonce) != NONCE_HEX or len(tag) != TAG_HEX:
            return False
        return hmac.compare_digest(tag, self._tag(nonce, user_id))
