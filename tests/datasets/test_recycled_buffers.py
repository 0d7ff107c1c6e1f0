import gc
import os
import pickle
import threading

import numpy as np
import pytest
import torch

from lerobot.common.datasets.lerobot_dataset import to_unit_float
from lerobot.common.datasets.recycled_buffers import RecycledBuffers

MB = 1 << 20


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_memory_is_reused_only_after_every_reference_is_gone():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=1)
    first = buffers.empty((2, 3, 256, 256), np.float32)
    address = _address(first)
    tensor = torch.from_numpy(first)
    view = tensor[1]  # a view keeps the storage, hence the array, alive
    del first, tensor
    gc.collect()
    second = buffers.empty((2, 3, 256, 256), np.float32)
    assert _address(second) != address  # the first block is still visible through `view`
    view.fill_(7.0)
    assert not np.shares_memory(second, view.numpy())
    del view
    gc.collect()
    third = buffers.empty((2, 3, 256, 256), np.float32)
    assert _address(third) == address
    assert buffers.held_bytes == 0


def test_numpy_views_keep_the_memory_in_use_too():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=1)
    array = buffers.empty((4, 1000), np.float32)
    address = _address(array)
    row = array[1]  # a numpy view, whose base numpy sets to the first array that owns memory
    sliced = array.reshape(2, 2000)[:, ::2]
    del array
    gc.collect()
    assert buffers.held_bytes == 0
    other = buffers.empty((4, 1000), np.float32)
    assert _address(other) != address
    del row, sliced
    gc.collect()
    assert buffers.held_bytes == 16000


def test_blocks_are_matched_by_size_and_dtype_views_work():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=1)
    a = buffers.empty((4, 1000), np.float32)
    address = _address(a)
    del a
    assert buffers.held_bytes == 16000
    b = buffers.empty((2, 1000), np.float64)  # same byte count, other dtype and shape
    assert _address(b) == address and b.dtype == np.float64 and b.shape == (2, 1000)
    assert b.flags.c_contiguous and b.flags.writeable
    c = buffers.empty((3, 1000), np.float32)  # another size: a fresh block
    assert _address(c) != address


def test_small_requests_are_plain_arrays_and_not_kept():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=MB)
    small = buffers.empty((10, 10), np.float32)
    assert small.shape == (10, 10)
    del small
    assert buffers.held_bytes == 0


def test_the_free_list_is_bounded_dropping_the_oldest_sizes_first():
    buffers = RecycledBuffers(max_bytes=3 * MB, min_bytes=1)
    arrays = [buffers.empty((MB,), np.uint8) for _ in range(2)] + [buffers.empty((2 * MB,), np.uint8)]
    too_big = buffers.empty((4 * MB,), np.uint8)
    del too_big  # larger than max_bytes: never kept
    assert buffers.held_bytes == 0
    del arrays[0], arrays[0]  # two 1 MB blocks
    assert buffers.held_bytes == 2 * MB
    del arrays[0]  # the 2 MB block needs room: one of the 1 MB blocks, returned first, goes
    assert buffers.held_bytes == 3 * MB
    assert buffers.empty((2 * MB,), np.uint8) is not None and buffers.held_bytes == MB
    buffers.clear()
    assert buffers.held_bytes == 0


@pytest.mark.parametrize("max_bytes, min_bytes", [(-1, 1), (10, 0)])
def test_bad_limits_are_rejected(max_bytes, min_bytes):
    with pytest.raises(ValueError, match="max_bytes"):
        RecycledBuffers(max_bytes=max_bytes, min_bytes=min_bytes)


def test_concurrent_use_never_hands_one_block_to_two_live_arrays():
    buffers = RecycledBuffers(max_bytes=64 * MB, min_bytes=1)
    errors = []

    def work(value: int) -> None:
        for _ in range(200):
            a = buffers.empty((64, 1024), np.float32)
            a.fill(value)
            if not (a == value).all():
                errors.append(value)

    threads = [threading.Thread(target=work, args=(v,)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_forked_child_starts_with_an_empty_free_list():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=1)
    a = buffers.empty((MB,), np.uint8)
    del a
    assert buffers.held_bytes == MB
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, str(buffers.held_bytes).encode())
        os._exit(0)
    os.close(write)
    held_in_child = int(os.read(read, 32))
    os.waitpid(pid, 0)
    os.close(read)
    assert held_in_child == 0 and buffers.held_bytes == MB


def test_to_unit_float_values_and_that_samples_survive_later_calls():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 480, 640), dtype=np.uint8)
    kept = to_unit_float(frames)
    expected = torch.from_numpy(frames).float() / 255
    assert kept.dtype == torch.float32 and torch.equal(kept, expected)
    for _ in range(3):  # later samples of the same shape must not reuse a block still in use
        other = to_unit_float(np.zeros_like(frames))
        assert other.abs().sum() == 0
        del other
    assert torch.equal(kept, expected)
    # Tensors pickled to another process (DataLoader workers) carry their values, not the block.
    assert torch.equal(pickle.loads(pickle.dumps(kept)), expected)


def test_a_block_returned_while_the_lock_is_held_is_dropped_not_deadlocked():
    buffers = RecycledBuffers(max_bytes=16 * MB, min_bytes=1)
    a = buffers.empty((MB,), np.uint8)
    with buffers._lock:  # as when a garbage collection inside `empty` runs the finalizer
        del a
    assert buffers.held_bytes == 0
