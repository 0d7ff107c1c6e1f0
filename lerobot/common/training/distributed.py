"""Data-parallel training on torch.distributed, for runs launched by `torchrun` or `accelerate launch`.

Both launchers start one process per device and set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
`setup()` reads them, joins the process group (NCCL on GPUs, gloo on CPU) and `wrap()` puts the policy in
DistributedDataParallel, which averages gradients across processes in backward. Without those variables it is a
single process and every call here is a no-op.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass
class Distributed:
    enabled: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, policy: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return policy
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # Some parameters legitimately get no gradient in a step (VQ-BeT's GPT during its VQ-VAE phase, an unused
        # camera branch), which plain DDP would treat as an error.
        return DistributedDataParallel(policy, device_ids=device_ids, find_unused_parameters=True)

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def average(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Mean of the float metrics over processes (for logging); counters are already global."""
        if not self.enabled:
            return metrics
        keys = [k for k in ("loss", "grad_norm", "update_s", "data_s") if k in metrics]
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        torch_dist.all_reduce(values)
        return {**metrics, **{k: v / self.world_size for k, v in zip(keys, values.tolist())}}

    def no_sync(self, model: torch.nn.Module) -> Any:
        return model.no_sync() if self.enabled else nullcontext()

    def cleanup(self) -> None:
        if self.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def setup() -> Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(enabled=False)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Distributed(enabled=True, rank=rank, world_size=world_size, local_rank=local_rank, device=device)
