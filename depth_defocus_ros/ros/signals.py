"""How ``depth_defocus_node`` stops: ``StopSignals`` (SIGINT / SIGTERM, any number of them, ask for
a clean stop) and ``spin_until_stopped`` (the spin loop that checks for it).
"""

from __future__ import annotations

import signal

from rclpy.executors import SingleThreadedExecutor

__all__ = ["StopSignals", "spin_until_stopped"]


class StopSignals:
    """SIGINT and SIGTERM ask the node to stop, however many arrive and from whom (a terminal sends
    Ctrl-C to the whole process group, launch forwards its own SIGINT, then SIGTERM): the first
    sets :attr:`requested`, later ones are counted and otherwise ignored, so no KeyboardInterrupt
    can land in the middle of the clean-up. rclpy's own handlers are not installed
    (``SignalHandlerOptions.NO``): the spin loop checks :attr:`requested`.

    The handler takes no lock: Python runs a pending handler between any two bytecodes, those of a
    running handler included, so a second signal's handler can run inside the first one. With a
    ``threading.Event`` the second ``set()`` waited forever for the lock the first one held (seen once
    in 200 runs of three SIGINTs 10 ms apart: the node never exited). A plain flag cannot block."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._requested = False
        self.count = 0
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self._requested = True  # an attribute store: nothing here can wait (see the class docstring)

    @property
    def requested(self) -> bool:
        """True once SIGINT or SIGTERM has arrived."""
        return self._requested

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def ignore_further(self) -> None:
        """Ignore the signals from now on: Python puts back the default action (die by the signal)
        of a signal whose handler is a Python function while the interpreter exits, but leaves an
        ignored one ignored, so a late second Ctrl-C cannot turn a clean exit into 'killed'."""
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def spin_until_stopped(node, stop: StopSignals, period_s: float = 0.1) -> None:
    """Run the node's callbacks until a stop signal (or an external shutdown) arrives."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not stop.requested and node.context.ok():
            executor.spin_once(timeout_sec=period_s)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
