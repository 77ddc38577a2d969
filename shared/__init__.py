"""Code both nightjar processes need: wire models, the bundle store, logging and settings."""

__version__ = "0.1.0"
