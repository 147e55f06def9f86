"""Passwords in URLs: found, hidden, and taken out of the URL.

fsspec reads the password of a URL's userinfo (``ssh://user:PASSWORD@host``)
into an argument of the filesystem class, through the class's
``_get_kwargs_from_urls``: ``password`` for sshfs, ftp and webhdfs,
``token`` for gist (fsspec 2026.9). journalq moves the password into that
storage option before the URL is used for anything else
(:func:`journalq.backends.split_url`). So the URL that is journaled,
compared, printed, logged and hashed into a queue name keeps the user name
but no password, and the password is a storage option whose name marks it
secret, which is never journaled.

A filesystem that reads no password from its URLs (memory, file, s3, gcs,
http) would keep ``user:PASSWORD@`` in every path of the queue, and paths
are journaled, so such a URL is rejected. Where the class reads that part
of the URL into an option that is no secret (github takes the repository
there), the URL stays as it is.
"""

from __future__ import annotations

import re
from typing import Final

from journalq.errors import ActionError

__all__ = [
    "chained_password_error",
    "hide_password",
    "url_password",
    "without_password",
]

# scheme://authority/rest, with the authority up to the first /, ? or #
# (RFC 3986, section 3.2).
_URL: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)(?P<rest>.*)",
    re.DOTALL,
)


def _split_userinfo(url: str) -> tuple[str, str, str, str] | None:
    """Return ``(scheme://, user, password, host and the rest)``, or None.

    None when the URL has no password. The userinfo ends at the last ``@``
    of the authority, as ``urllib.parse`` reads it, so a password may
    contain an unencoded ``@``.
    """
    match = _URL.fullmatch(url)
    if match is None:
        return None
    userinfo, at, host = match["authority"].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return None
    return match["scheme"], user, password, host + match["rest"]


def url_password(url: str) -> str | None:
    """Return the password of a URL that is not chained, or None."""
    parts = _split_userinfo(url)
    return None if parts is None else parts[2]


def without_password(url: str) -> str:
    """Return ``url``, which is not chained, without its password."""
    parts = _split_userinfo(url)
    if parts is None:
        return url
    scheme, user, _, rest = parts
    return f"{scheme}{user}@{rest}" if user else f"{scheme}{rest}"


def hide_password(url: str) -> str:
    """Return ``url`` without the password of its userinfo, user name kept.

    Each part of a chained URL (``simplecache::ssh://...``) loses its own.
    """
    return "::".join(without_password(part) for part in url.split("::"))


def chained_password_error(url: str) -> ActionError:
    """Build the error for a password in a part of a chained URL."""
    return ActionError(
        hide_password(url),
        "a password in a chained URL is not supported; remove it and give it "
        "in the storage options of that filesystem, for example "
        'ssh=\'{"password": "..."}\'',
    )
