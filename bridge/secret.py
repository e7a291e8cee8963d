"""``Secret``: a string that never shows itself. Pure."""

from __future__ import annotations


class Secret:
    """A string that never shows itself in ``repr``/``str``; call ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Shorter values are placeholders or typos, not secrets; and redacting them from logs
# would mark every place the same few characters appear.
SECRET_MIN_LENGTH = 8
