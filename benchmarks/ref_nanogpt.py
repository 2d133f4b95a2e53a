"""The reference for `bench_pretrain.py`: a plain one-file GPT and training loop in the usual
nanoGPT style (written for this benchmark; torch.compile off, as nanoGPT's CPU recipe runs).

The model is GPT-2's: learned absolute positions, pre-LayerNorm blocks with biases, a 4x GELU
MLP, causal SDPA attention, the LM head tied to the token embedding. The loop: random windows
of the token tensor stacked per step, AdamW (foreach, as nanoGPT on CPU), warmup + cosine lr,
gradient clipping at 1.0, ``loss.item()`` at each log interval.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, layers: int, heads: int, width: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled residual projections
            if name.endswith(("c_proj.weight", "mlp_proj.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def load_from_hf_gpt2(ref: GPT, hf) -> None:
    """Copy a transformers ``GPT2LMHeadModel``'s weights into ``ref`` (Conv1D weights are
    stored transposed), so the two can be checked to be the same model."""
    sd = hf.state_dict()
    with torch.no_grad():
        ref.wte.weight.copy_(sd["transformer.wte.weight"])
        ref.wpe.weight.copy_(sd["transformer.wpe.weight"])
        ref.ln_f.weight.copy_(sd["transformer.ln_f.weight"])
        ref.ln_f.bias.copy_(sd["transformer.ln_f.bias"])
        for i, b in enumerate(ref.h):
            p = f"transformer.h.{i}."
            for mine, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("c_attn", "attn.c_attn"),
                                 ("c_proj", "attn.c_proj"), ("c_fc", "mlp.c_fc"),
                                 ("mlp_proj", "mlp.c_proj")):
                w = sd[p + theirs + ".weight"]
                getattr(b, mine).weight.copy_(w if mine.startswith("ln") else w.t())
                getattr(b, mine).bias.copy_(sd[p + theirs + ".bias"])


def get_batch(data: torch.Tensor, block: int, batch: int, g: torch.Generator):
    ix = torch.randint(len(data) - block, (batch,), generator=g)
    x = torch.stack([data[i:i + block] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + block] for i in ix])
    return x, y


def lr_at(it: int, lr: float, warmup: int, total: int, min_lr: float) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    ratio = (it - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, ratio))) * (lr - min_lr)


def train(model: GPT, data: torch.Tensor, *, block: int, batch: int, steps: int, lr: float,
          warmup: int = 0, min_lr_ratio: float = 0.1, beta2: float = 0.99,
          weight_decay: float = 0.0, log_interval: int = 10, seed: int = 0) -> dict:
    """Train ``steps`` iterations; returns per-step seconds and the logged losses."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr,
                            betas=(0.9, beta2))
    g = torch.Generator().manual_seed(seed)
    step_s, losses = [], []
    model.train()
    for it in range(steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(it, lr, warmup, steps, lr * min_lr_ratio)
        x, y = get_batch(data, block, batch, g)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if it % log_interval == 0 or it == steps - 1:
            losses.append((it + 1, loss.item()))
        step_s.append(time.perf_counter() - t0)
    return {"step_s": step_s, "losses": losses}


@torch.no_grad()
def val_loss(model: GPT, data: torch.Tensor, block: int, batch: int = 64) -> float:
    """Mean loss over windows that cover ``data`` once (every token but the first)."""
    model.eval()
    total, n = 0.0, 0
    starts = list(range(0, len(data) - block - 1, block))
    for i in range(0, len(starts), batch):
        ix = starts[i:i + batch]
        x = torch.stack([data[s:s + block] for s in ix])
        y = torch.stack([data[s + 1:s + 1 + block] for s in ix])
        total += model(x, y).item() * y.numel()
        n += y.numel()
    model.train()
    return total / max(n, 1)
