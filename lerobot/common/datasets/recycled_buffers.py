"""Output buffers for decoded frames that are reused once nothing refers to them any more.

A 480x640 sample with two frames is 7.4 MB of float32, and a DataLoader worker makes a batch's worth of them
(236 MB at batch 32), collates them and frees them, for every batch. glibc hands such blocks back to the
kernel when they are freed (they are mmapped, or trimmed off the top of the heap), so the next batch faults
every page in again: on the VM this was measured on, about a million page faults (~25% of the worker's
faults) per epoch of the 480x640 benchmark dataset.

`RecycledBuffers.empty(shape, dtype)` returns a numpy array whose memory goes back to a small free list once
the array, and every tensor or view made from it, has been garbage collected (a `weakref.finalize` on an anchor
array that every numpy view and every tensor from `torch.from_numpy` keeps alive). Memory is therefore
only ever reused when no one can see it: a sample a user keeps is never overwritten. The free list is bounded
(`max_bytes`) and only holds blocks of at least `min_bytes`; smaller requests are plain `np.empty`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict

import numpy as np

# Blocks below this are served well by malloc's heap (they are reused without page faults).
DEFAULT_MIN_BYTES = 1 << 20
# Enough for a batch of 32 samples of two 480x640 frames (236 MB) with room to spare; what the list keeps
# stays resident, so it is bounded.
DEFAULT_MAX_BYTES = 512 << 20


class RecycledBuffers:
    """A bounded free list of raw byte blocks, keyed by size, that arrays return to when they die."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, min_bytes: int = DEFAULT_MIN_BYTES):
        if max_bytes < 0 or min_bytes < 1:
            raise ValueError(f"max_bytes must be >= 0 and min_bytes >= 1, got {max_bytes} and {min_bytes}.")
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self._reset()
        # A fork (DataLoader workers) must not inherit a lock another thread holds, nor the parent's blocks
        # (the child would copy-on-write them: no cheaper than fresh pages).
        os.register_at_fork(after_in_child=_reset_if_alive(weakref.ref(self)))

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._free: OrderedDict[int, list[np.ndarray]] = OrderedDict()  # nbytes -> blocks, least recent first
        self._held_bytes = 0

    @property
    def held_bytes(self) -> int:
        """Bytes currently kept in the free list (not in use by any array)."""
        return self._held_bytes

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array, like `np.empty`, backed by a recycled block when one fits."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        block = None
        with self._lock:
            blocks = self._free.get(nbytes)
            if blocks:
                block = blocks.pop()
                self._held_bytes -= nbytes
                if not blocks:
                    del self._free[nbytes]
        if block is None:
            block = np.empty(nbytes, np.uint8)
        # Every view of `anchor` (numpy, or torch through `from_numpy`) keeps `anchor` itself alive: numpy
        # collapses a view's base to the first array that owns its memory, and `anchor` owns none (its base is a
        # memoryview). A view of `block` would skip the returned array and let it die while views still exist.
        anchor = np.frombuffer(memoryview(block), np.uint8)
        # The finalizer holds the block, and only a weak reference to the anchor: the block outlives every view.
        weakref.finalize(anchor, self._give_back, block).atexit = False
        return anchor.view(dtype).reshape(shape)

    def _give_back(self, block: np.ndarray) -> None:
        nbytes = block.nbytes
        # Finalizers can run from a garbage collection triggered inside `empty` on this very thread: never
        # wait for the lock here (that would deadlock); in that rare case the block is simply freed.
        if nbytes > self.max_bytes or not self._lock.acquire(blocking=False):
            return
        try:
            # Make room by dropping the least recently returned sizes first (a dataset whose frame shape
            # changed leaves blocks of the old size behind).
            while self._held_bytes + nbytes > self.max_bytes and self._free:
                size, blocks = next(iter(self._free.items()))
                blocks.pop()
                self._held_bytes -= size
                if not blocks:
                    del self._free[size]
            blocks = self._free.setdefault(nbytes, [])
            self._free.move_to_end(nbytes)
            blocks.append(block)
            self._held_bytes += nbytes
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Drop every kept block (memory in use by live arrays is unaffected)."""
        with self._lock:
            self._free.clear()
            self._held_bytes = 0


def _reset_if_alive(ref: weakref.ref):
    def reset() -> None:
        buffers = ref()
        if buffers is not None:
            buffers._reset()

    return reset


# One per process, shared by every dataset in it.
frame_buffers = RecycledBuffers()
