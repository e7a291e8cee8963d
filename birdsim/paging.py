"""Bird-style pagination: ``limit`` + opaque ``pageToken`` -> ``{results, nextPageToken}`` (pure).

A token is base64 of the JSON array ``[resource, seq]``: continue after the item numbered ``seq``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from birdsim.problems import Problems

T = TypeVar("T")

MAX_TOKEN_CHARS = 8000  # bird-api.md 1, Pagination


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: int | None  # sequence number of the last item already seen
    reverse: bool = False


def encode_token(resource: str, seq: int) -> str:
    # Bird's tokens look like base64 of a JSON array (bird-api.md 1, Pagination). A sequence
    # number rather than an offset keeps later pages stable when items are deleted in between.
    return base64.b64encode(json.dumps([resource, seq]).encode()).decode("ascii")


def decode_token(resource: str, token: str) -> int:
    """The sequence number in ``token``; ``ValueError`` unless it is ours for ``resource``."""
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError("too long")
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not a page token") from exc
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or decoded[0] != resource
        or not isinstance(decoded[1], int)
        or isinstance(decoded[1], bool)
    ):
        raise ValueError("not a page token for this list")
    return decoded[1]


def parse_page_request(
    query: Mapping[str, str],
    resource: str,
    *,
    max_limit: int,
    problems: Problems,
    default_limit: int = 10,
    allow_reverse: bool = False,
) -> PageRequest:
    """Read ``limit``, ``pageToken`` (and ``reverse``) from a query, adding problems by name."""
    limit = default_limit
    raw_limit = query.get("limit")
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            problems.add("limit", "must be an integer")
        else:
            if not 1 <= limit <= max_limit:
                problems.add("limit", f"must be between 1 and {max_limit}")
    after: int | None = None
    token = query.get("pageToken")
    if token:
        try:
            after = decode_token(resource, token)
        except ValueError:
            problems.add("pageToken", "invalid page token")
    reverse = False
    if allow_reverse and "reverse" in query:
        raw = query["reverse"].lower()
        if raw not in ("true", "false"):
            problems.add("reverse", "must be true or false")
        reverse = raw == "true"
    return PageRequest(limit=limit, after=after, reverse=reverse)


def paginate(
    items: Sequence[T],
    page: PageRequest,
    resource: str,
    seq_of: Callable[[T], int],
    render: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """One page of ``items`` (sorted by ascending seq); ``nextPageToken`` only if more remain."""
    ordered = list(reversed(items)) if page.reverse else list(items)
    if page.after is not None:
        after = page.after
        if page.reverse:
            ordered = [i for i in ordered if seq_of(i) < after]
        else:
            ordered = [i for i in ordered if seq_of(i) > after]
    chosen = ordered[: page.limit]
    body: dict[str, Any] = {"results": [render(i) for i in chosen]}
    if len(ordered) > page.limit:
        body["nextPageToken"] = encode_token(resource, seq_of(chosen[-1]))
    return body
