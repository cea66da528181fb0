"""Load is only ever sent to this machine: refuse any target that is not a loopback address."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback_host(host: str) -> str:
    if not is_loopback_host(host):
        raise SystemExit(f"refusing to send load to {host!r}: only loopback targets (127.0.0.0/8, ::1, localhost)")
    return host


def require_loopback_url(url: str) -> str:
    """`url` without a trailing slash, if it is http(s) on a loopback host; else exit with a message."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"bad URL {url!r}: expected http://127.0.0.1:<port>")
    require_loopback_host(parts.hostname)
    return url.rstrip("/")
