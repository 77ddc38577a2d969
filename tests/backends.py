"""Loopback HTTP backends; they live in sandbox.backends (shared with make demo)."""

from sandbox.backends import Backend, backends

__all__ = ["Backend", "backends"]
