"""What ``depth_defocus_node`` knows of the camera: the latest valid CameraInfo per image size and
frame (:class:`CameraInfoStore`) and the camera's frame_id (:class:`FrameIdLock`).

CameraInfo and Image arrive on two topics in either order, so a frame is matched with a CameraInfo
by its size (px) and frame_id, not by arrival.
"""

from __future__ import annotations

import threading

from .conversions import BadInput

__all__ = ["CameraInfoStore", "FrameIdLock", "FRAME_ID_RELOCK"]

FRAME_ID_RELOCK = 30  # a new frame_id seen in this many frames in a row is taken as the camera's new frame


class CameraInfoStore:
    """The latest valid CameraInfo per (width, height, frame_id), with its Intrinsics (thread-safe:
    the executor thread adds, the worker matches). Keeps the ``keep`` most recent camera modes."""

    def __init__(self, keep: int = 8):
        self.keep = keep
        self._lock = threading.Lock()
        self._latest: tuple | None = None  # (CameraInfo, Intrinsics): the latest valid CameraInfo
        self._by_key: dict = {}

    def add(self, msg, intr) -> None:
        """Store a checked CameraInfo ``msg`` and its Intrinsics ``intr``."""
        with self._lock:
            key = (msg.width, msg.height, msg.header.frame_id)
            self._by_key.pop(key, None)  # re-insert: the dict's order is the arrival order
            self._latest = self._by_key[key] = (msg, intr)
            while len(self._by_key) > self.keep:  # a few camera modes; forget the oldest
                self._by_key.pop(next(iter(self._by_key)))

    def match(self, w: int, h: int, frame_id: str) -> tuple:
        """(latest, found): the latest (CameraInfo, Intrinsics) received (or None) and the one for a
        w x h frame with ``frame_id`` (or None): the latest for this size and frame_id; a CameraInfo
        without frame_id fits any frame, and a frame without frame_id takes the latest of its size."""
        with self._lock:
            latest = self._latest
            found = self._by_key.get((w, h, frame_id)) or self._by_key.get((w, h, ""))
            if found is None and not frame_id:
                found = next((v for (kw, kh, _), v in reversed(self._by_key.items()) if (kw, kh) == (w, h)), None)
        return latest, found


class FrameIdLock:
    """The camera's frame_id: the first frame's. A frame with another one is refused (BadInput
    ``frame_id_changed``) until that one has come in :data:`FRAME_ID_RELOCK` frames in a row; from
    then on it is the camera's frame_id. Used by the worker thread only."""

    def __init__(self):
        self.frame_id: str | None = None
        self._other_frame_id, self._other_count = None, 0

    def check(self, frame_id: str) -> str:
        """``"first"`` (the first frame: now the camera's), ``"same"``, or ``"followed"`` (the
        camera's frame_id is now this one); raises :class:`BadInput` for a frame to skip."""
        if self.frame_id is None:
            self.frame_id = frame_id
            return "first"
        if frame_id == self.frame_id:
            self._other_frame_id, self._other_count = None, 0
            return "same"
        if frame_id == self._other_frame_id:
            self._other_count += 1
        else:
            self._other_frame_id, self._other_count = frame_id, 1
        if self._other_count >= FRAME_ID_RELOCK:
            self.frame_id, self._other_frame_id, self._other_count = frame_id, None, 0
            return "followed"
        raise BadInput(
            "frame_id_changed",
            f"frame_id '{frame_id}' differs from the camera's '{self.frame_id}' "
            f"(taken as the new frame after {FRAME_ID_RELOCK} frames in a row)",
        )
