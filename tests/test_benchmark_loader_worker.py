"""The data-loading benchmark's ceiling dataset: copies of real items, in recycled memory."""

import gc
import importlib.util
from pathlib import Path

import torch

from lerobot.common.datasets.recycled_buffers import frame_buffers

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "_loader_worker.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_loader_worker", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Items:
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        image = torch.full((2, 3, 240, 320), float(i))  # 1.8 MB: large enough to be recycled
        return {"image": image, "pad": torch.tensor([i % 2 == 0, True]), "task": "a string is dropped"}


def test_ceiling_items_are_equal_independent_copies_in_recycled_memory():
    items = _load().InMemoryItems(_Items(64), count=4)
    assert len(items) == 64 and items.buffers is frame_buffers
    first = items[0]
    assert set(first) == {"image", "pad"}
    assert torch.equal(first["image"], items.items[0]["image"]) and first["pad"].dtype == torch.bool
    first["image"].fill_(-1.0)  # a copy: the kept item is untouched
    assert torch.equal(items[0]["image"], torch.zeros(2, 3, 240, 320))
    nbytes = first["image"].numel() * 4
    del first
    gc.collect()
    held = frame_buffers.held_bytes
    assert held >= nbytes
    again = items[16]  # same source item, same size: a block freed above is reused
    assert frame_buffers.held_bytes == held - nbytes
    assert torch.equal(again["image"], items.items[0]["image"])
