"""``LatestSlot``: the one-frame mailbox between the node's subscription callbacks and its worker.

Latest frame wins: a frame put while one is still waiting replaces it (the caller counts that as
dropped). Plain Python (threading only), usable without a ROS install.
"""

from __future__ import annotations

import threading

__all__ = ["LatestSlot"]


class LatestSlot:
    """A one-item mailbox: ``put`` replaces what is waiting (returns True when it did)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None):
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def empty(self) -> bool:
        with self._cond:
            return self._item is None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
