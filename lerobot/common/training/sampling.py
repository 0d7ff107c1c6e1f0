"""The order in which training visits frames, as a pure function of (seed, step).

A fresh permutation each epoch, drawn from a generator seeded with (seed, epoch), means a run resumed at step
`s` sees exactly the batches an uninterrupted run sees from step `s` on, without saving any sampler state. In a
multi-process run every process walks the same global batches and takes its own slice of each, so `world_size`
processes with per-process batch `b` see the batches one process with batch `world_size * b` would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless batches of dataset indices, reproducible from (seed, step) and sliceable across processes.

    Args:
        indices: the dataset indices training may use as the current frame (e.g. an `EpisodeAwareSampler`'s
            indices, which leave out the last frames of every episode).
        batch_size: samples per process and step.
        seed: seeds the per-epoch permutations.
        start_step: the first step to produce (the resumed step).
        shuffle: permute each epoch (False: dataset order, e.g. for debugging).
        rank, world_size: this process's slice of each global batch of `batch_size * world_size`.

    An epoch's last global batch is dropped when it is incomplete and there are several processes (every
    process must take part in every step); with one process it is kept, as the reference's loader does.
    """

    def __init__(
        self,
        indices: torch.Tensor | list[int],
        batch_size: int,
        seed: int,
        start_step: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.indices = torch.as_tensor(indices, dtype=torch.int64)
        if self.indices.ndim != 1 or len(self.indices) == 0:
            raise ValueError(
                "ResumableBatchSampler needs a non-empty 1-D list of dataset indices to sample from."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size}).")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.shuffle = shuffle
        self.rank, self.world_size = rank, world_size
        self.global_batch = self.batch_size * world_size
        if world_size > 1 and len(self.indices) < self.global_batch:
            raise ValueError(
                f"{len(self.indices)} training samples cannot fill one global batch of {self.global_batch} "
                f"({world_size} processes x batch {batch_size}); lower training.batch_size."
            )
        n = len(self.indices)
        self.batches_per_epoch = n // self.global_batch if world_size > 1 else -(-n // self.global_batch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return self.indices
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return self.indices[torch.randperm(len(self.indices), generator=generator)]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            epoch, position = divmod(step, self.batches_per_epoch)
            order = self.epoch_order(epoch)
            for b in range(position, self.batches_per_epoch):
                global_batch = order[b * self.global_batch : (b + 1) * self.global_batch]
                own = global_batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
                yield own.tolist()
                step += 1
            # Every step of this epoch is done: the next starts at position 0 of the following epoch.
            step = (epoch + 1) * self.batches_per_epoch
