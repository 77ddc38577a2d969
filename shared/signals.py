"""Graceful stop for long-running processes: SIGTERM/SIGINT set an event the loop waits on."""

from __future__ import annotations

import signal
import threading

from shared.logs import EventLogger


def stop_on_signals(log: EventLogger, event: str) -> threading.Event:
    """An event set (and logged as ``event``) on SIGTERM or SIGINT; call from the main thread."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info(event, signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
