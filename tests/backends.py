"""Loopback HTTP backends; they live in demo.backends (shared with make demo)."""

from demo.backends import Backend, backends

__all__ = ["Backend", "backends"]
