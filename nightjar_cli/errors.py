"""Exceptions of the operator CLI."""

from __future__ import annotations

from shared.errors import NightjarError


class OperatorError(NightjarError):
    """An operator request that cannot be done; the message says what to do instead."""
