"""SmoothQuant-style scaling (Xiao et al. 2023) before int8 activation quantization.

A few input channels of SmolLM2's projections carry activations far larger than the rest, so
one int8 scale per tensor (fbgemm's dynamic linear) rounds the ordinary channels to nothing.
For a linear y = x W^T, dividing input channel j by s_j and multiplying weight column j by s_j
leaves y unchanged; with s_j = max|x_j|^a / max|W_:j|^(1-a) the activation range shrinks and the
weights absorb it. The 1/s is folded into the op that feeds the input, so nothing is added:

- q/k/v and gate/up read an RMSNorm's output: divide the norm's weight by s (shared s per norm);
- down_proj reads silu(gate) * up: divide up_proj's row j by s_j (the product is linear in up);
- the LM head reads the final RMSNorm (the head is untied from the embedding table first).

o_proj is left alone (its input channels come from v_proj rows shared by several query heads).
Calibration: per-channel max |x| over a few batches, collected with forward hooks.
Legend: D hidden size, I MLP width.
"""

from __future__ import annotations

import torch

from lmlab.quant.ptq import untie_lm_head


@torch.no_grad()
def input_absmax(model, batches: list[dict]) -> dict[str, torch.Tensor]:
    """Per-channel max |input| of each q_proj, gate_proj and down_proj (by module name)."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, mod in model.named_modules():
        if name.endswith(("self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj")) or \
                mod is model.get_output_embeddings():
            def hook(m, args, out, name=name):
                x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)  # (D,) / (I,)
                stats[name] = torch.maximum(stats[name], x) if name in stats else x
            hooks.append(mod.register_forward_hook(hook))
    try:
        model.eval()
        for b in batches:
            model(input_ids=b["input_ids"], attention_mask=b.get("attention_mask"))
    finally:
        for h in hooks:
            h.remove()
    return stats


def _scales(act: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    w = torch.stack([x.abs().amax(0) for x in weights]).amax(0)  # (in,) max over outputs
    s = act.clamp(min=1e-5).pow(alpha) / w.clamp(min=1e-5).pow(1 - alpha)
    return s.clamp(min=1e-5)


@torch.no_grad()
def smooth(model, stats: dict[str, torch.Tensor], alpha: float = 0.5) -> None:
    """Rescale in place; the float model computes the same function (up to rounding)."""
    for i, layer in enumerate(model.model.layers):
        p = f"model.layers.{i}."
        a, mlp = layer.self_attn, layer.mlp
        s = _scales(stats[p + "self_attn.q_proj"], [a.q_proj.weight, a.k_proj.weight,
                                                    a.v_proj.weight], alpha)
        layer.input_layernorm.weight.div_(s)
        for lin in (a.q_proj, a.k_proj, a.v_proj):
            lin.weight.mul_(s)
        s = _scales(stats[p + "mlp.gate_proj"], [mlp.gate_proj.weight, mlp.up_proj.weight], alpha)
        layer.post_attention_layernorm.weight.div_(s)
        mlp.gate_proj.weight.mul_(s)
        mlp.up_proj.weight.mul_(s)
        s = _scales(stats[p + "mlp.down_proj"], [mlp.down_proj.weight], alpha)  # (I,)
        mlp.up_proj.weight.div_(s[:, None])
        mlp.down_proj.weight.mul_(s)
    head = model.get_output_embeddings()
    head_name = next(n for n, m in model.named_modules() if m is head)
    untie_lm_head(model)  # the embedding table must not be rescaled with the head
    s = _scales(stats[head_name], [model.get_output_embeddings().weight], alpha)
    model.model.norm.weight.div_(s)
    model.get_output_embeddings().weight.mul_(s)


def calibration_batches(tokenizer, n: int = 16, max_len: int = 128, batch: int = 8,
                        tasks: tuple[str, ...] = ("add", "compare", "convert", "sort")
                        ) -> list[dict]:
    """Chat-formatted built-in task rows (train split): prompt and answer, padded."""
    from lmlab.data import collate, encode_rows
    from lmlab.data.tasks import task_rows

    rows = task_rows(list(tasks), "chat", "train", n=n, seed=0)
    examples, _ = encode_rows(tokenizer, rows, "chat", max_len, on_long="truncate")
    return [collate(examples[i:i + batch], tokenizer.pad_token_id)
            for i in range(0, len(examples), batch)]
