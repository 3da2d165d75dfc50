"""The URL policy: which URLs a manifest may name and a server may redirect to.

https anywhere; plain http to a loopback host (local mirrors, tests), or to
any host with the RESNET_KERAS_ALLOW_HTTP=1 opt-in (corporate mirrors; the
hash is still verified); file:// in manifests only; never credentials in a
URL, never a redirect from https down to http (loopback included).
"""

from __future__ import annotations

import ipaddress
import os
import unicodedata
import urllib.parse
from typing import Any

from ...errors import ManifestError

# Plain http to a host other than loopback: only a corporate mirror the
# user names, and only with this switch (the hash is still verified).
ALLOW_HTTP_ENV = "RESNET_KERAS_ALLOW_HTTP"


def invisible_or_control(text: str) -> bool:
    """Control (C0, C1), format (bidi overrides, zero-width), surrogate,
    private-use or unassigned characters, and line or paragraph separators:
    all of them can make a printed name lie about what it is."""
    return any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp")
               for ch in text)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_allowed() -> bool:
    return os.environ.get(ALLOW_HTTP_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _parts(url: Any):
    """(scheme, host) of an acceptable URL, or None (credentials, bad syntax)."""
    if not isinstance(url, str) or invisible_or_control(url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:  # e.g. 'https://[::1/x': an unclosed IPv6 bracket
        return None
    if parts.username or parts.password:
        return None
    return parts.scheme, host, parts.path


def _allowed(url: Any, *, allow_file: bool) -> bool:
    parts = _parts(url)
    if parts is None:
        return False
    scheme, host, path = parts
    return bool(
        (scheme == "https" and host)
        or (scheme == "http" and host and (_is_loopback(host) or http_allowed()))
        or (allow_file and scheme == "file" and path)
    )


def check_url(url: Any, where: str = "url") -> str:
    """https anywhere; http to loopback (or anywhere with the opt-in); file:// for local mirrors."""
    if not _allowed(url, allow_file=True):
        raise ManifestError(
            f"{where} must be an https:// URL without credentials (http:// "
            "only to 127.0.0.1, ::1 or localhost, or to any host with "
            f"{ALLOW_HTTP_ENV}=1; file:// for local mirrors). Received: {url!r}"
        )
    return url


def check_redirect(source: str, target: str) -> None:
    """A server's redirect: allowed URLs only, and never from https to http."""
    if not _allowed(target, allow_file=False):
        raise ManifestError(
            f"redirected to {target}, which the URL policy does not allow "
            "(https, or http to a loopback host); refused"
        )
    if urllib.parse.urlsplit(source).scheme == "https" and not target.startswith("https:"):
        raise ManifestError(
            f"redirected from https to plain http ({target}); refused, loopback "
            "included, so a mirror cannot reach services on this machine"
        )
