"""The causal transformer of VQ-BeT: a GPT-2 style decoder-only stack over continuous input tokens.

Unlike a language model it reads vectors, not token ids (`wte` is a Linear layer), and returns vectors
(`lm_head` maps to `gpt_output_dim`). Module and parameter names follow the reference (which follows
nanoGPT): `transformer.{wte, wpe, h.<i>.{ln_1, attn.{c_attn, c_proj, bias}, ln_2, mlp}, ln_f}`, `lm_head`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies.dropout import Dropout
from lerobot.common.policies.vqbet.configuration_vqbet import VQBeTConfig


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each token sees itself and the tokens before it."""

    def __init__(self, config: VQBeTConfig):
        super().__init__()
        d, block = config.gpt_hidden_dim, config.gpt_block_size
        self.n_head = config.gpt_n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(d, 3 * d)  # query, key, value of all heads at once
        self.c_proj = nn.Linear(d, d)
        self.resid_dropout = Dropout(config.dropout)
        # The causal mask; a persistent buffer because reference checkpoints hold it.
        self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, T, D)
        b, t, d = x.shape
        heads = (b, t, self.n_head, d // self.n_head)
        q, k, v = (z.view(heads).transpose(1, 2) for z in self.c_attn(x).split(d, dim=2))  # (B, h, T, hd)
        mask = self.bias[:, :, :t, :t].bool()
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, T, hd)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with a 4x GELU MLP."""

    def __init__(self, config: VQBeTConfig):
        super().__init__()
        d = config.gpt_hidden_dim
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), Dropout(config.dropout))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Input tokens (B, T, gpt_input_dim) -> output features (B, T, gpt_output_dim), causally."""

    def __init__(self, config: VQBeTConfig):
        super().__init__()
        self.block_size = config.gpt_block_size
        d = config.gpt_hidden_dim
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Linear(config.gpt_input_dim, d),
                "wpe": nn.Embedding(config.gpt_block_size, d),
                "drop": Dropout(config.dropout),
                "h": nn.ModuleList(Block(config) for _ in range(config.gpt_n_layer)),
                "ln_f": nn.LayerNorm(d),
            }
        )
        self.lm_head = nn.Linear(d, config.gpt_output_dim, bias=False)
        # GPT-2 initialisation: N(0, 0.02) weights, and the residual projections scaled down by the depth
        # so that the residual stream's variance does not grow with the number of layers.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.gpt_n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor) -> Tensor:  # (B, T, gpt_input_dim) -> (B, T, gpt_output_dim)
        t = tokens.shape[1]
        if t > self.block_size:
            raise ValueError(f"The GPT got {t} tokens but gpt_block_size is {self.block_size}.")
        pos = torch.arange(t, device=tokens.device)
        x = self.transformer.drop(self.transformer.wte(tokens) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(weights that get weight decay: Linear weights; the rest: biases, LayerNorm, position embedding)."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
        return decay, no_decay
