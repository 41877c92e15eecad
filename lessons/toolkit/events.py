"""Name the bits of a readiness mask the way the kernel reported them.

`--trace` in every lesson server, and the capstone's trace output, print
`poll() -> [(7, POLLIN|POLLHUP)]` with these helpers instead of a bare number.
"""

from __future__ import annotations

import select

POLL_BITS = [
    (name, getattr(select, name))
    for name in ("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLRDHUP")
    if hasattr(select, name)
]

EPOLL_BITS = [
    (name, getattr(select, name))
    for name in ("EPOLLIN", "EPOLLPRI", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLRDHUP",
                 "EPOLLET", "EPOLLONESHOT", "EPOLLEXCLUSIVE")
    if hasattr(select, name)
]


def _describe(mask: int, bits: list[tuple[str, int]]) -> str:
    names = [name for name, bit in bits if mask & bit]
    rest = mask & ~sum(bit for _, bit in bits)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def describe_poll(mask: int) -> str:
    """describe_poll(select.POLLIN | select.POLLHUP) -> 'POLLIN|POLLHUP'."""
    return _describe(mask, POLL_BITS)


def describe_epoll(mask: int) -> str:
    """describe_epoll(select.EPOLLIN | select.EPOLLET) -> 'EPOLLIN|EPOLLET'."""
    return _describe(mask, EPOLL_BITS)


def describe_selectors(mask: int) -> str:
    import selectors

    names = [name for name, bit in (("EVENT_READ", selectors.EVENT_READ),
                                    ("EVENT_WRITE", selectors.EVENT_WRITE)) if mask & bit]
    return "|".join(names) or "0"
