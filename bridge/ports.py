"""Listening ports: find out before starting anything whether one can be listened on.

Does I/O (a probe socket that is bound and closed at once).
"""

from __future__ import annotations

import socket


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (for example "Address already in use"), or None.

    The probe binds as asyncio's servers do (``SO_REUSEADDR``, IPv6 only on IPv6
    addresses), so a port left in TIME_WAIT is no obstacle and a busy one is.
    """
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return exc.strerror or str(exc)
    return None
