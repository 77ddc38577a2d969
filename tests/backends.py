"""Loopback HTTP backends; they live in sandbox.backends (shared with make demo)."""

from sandbox.backends import Backend, Behaviour, backends

__all__ = ["Backend", "Behaviour", "backends"]
