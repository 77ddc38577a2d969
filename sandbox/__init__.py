"""The loopback world nightjar runs in on one machine: HTTP backends and Cloud Map registration.

Used by ``make demo`` and by the tests; never shipped in the wheel. Everything binds 127.0.0.1.
"""
