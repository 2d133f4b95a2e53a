"""Structured pruning of Llama-family models (Minitron-style: score on calibration data, cut,
then heal by distillation). The result is a plain, smaller transformers model.

- Depth: a block's importance is 1 - cos(block input, block output) averaged over real tokens
  (the "Block Influence" of ShortGPT, Men et al. 2024); the blocks that change the residual
  stream least go first. An identity block scores 0.
- Width (Minitron, Muralidharan et al. 2024, activation-based): an attention head's importance
  is the mean L2 norm of what it writes into the residual stream (its output through its slice
  of o_proj; Minitron takes the norm before o_proj, which misses heads o_proj ignores); an MLP channel's is
  the mean |activation| entering down_proj; a hidden (embedding) channel's is the mean |output|
  of every RMSNorm, summed. Query heads are kept per key/value group, so GQA stays valid.

All scores come from one pass over the calibration batches with forward hooks; ``plan`` picks
what to keep and ``apply_plan`` writes a new model with sliced weights.

Legend: L layers, H query heads, Hkv key/value heads, G = H / Hkv, Dh head dim, D hidden,
I MLP width, V vocabulary, B batch, T time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmlab.errors import UserError


@dataclass
class PruneSpec:
    """Target sizes; 0 keeps a dimension as it is."""

    layers: int = 0
    heads: int = 0
    mlp: int = 0
    hidden: int = 0


@dataclass
class Importance:
    layers: torch.Tensor  # (L,) 1 - cos(in, out)
    heads: torch.Tensor  # (L, H)
    mlp: torch.Tensor  # (L, I)
    hidden: torch.Tensor  # (D,)


@dataclass
class Plan:
    layers: list[int]  # kept layer indices, in order
    heads: list[list[int]]  # per kept layer: kept query heads
    mlp: list[list[int]]  # per kept layer: kept MLP channels
    hidden: list[int]  # kept hidden channels


def _layers(model):
    return model.model.layers


def _check_llama(model) -> None:
    names = ("q_proj", "k_proj", "v_proj", "o_proj")
    layer = _layers(model)[0]
    if not all(hasattr(layer.self_attn, n) for n in names) or not hasattr(layer.mlp, "down_proj"):
        raise UserError(f"pruning supports Llama-family models (q/k/v/o_proj, gate/up/down_proj); "
                        f"got {type(model).__name__}")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x (B, T, ...) averaged over the real tokens of mask (B, T) -> (...)."""
    m = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x * m).sum((0, 1)) / m.sum().clamp(min=1)


def _first(x):
    return x[0] if isinstance(x, tuple) else x


@torch.no_grad()
def collect_importance(model, batches: list[dict]) -> Importance:
    """Importance scores over calibration batches (dicts with input_ids, attention_mask)."""
    _check_llama(model)
    cfg, layers = model.config, _layers(model)
    L, H = len(layers), cfg.num_attention_heads
    sums = {"layers": torch.zeros(L), "heads": torch.zeros(L, H),
            "mlp": torch.zeros(L, cfg.intermediate_size), "hidden": torch.zeros(cfg.hidden_size)}
    state: dict = {}

    def block_hook(i):
        def hook(mod, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            cos = F.cosine_similarity(x.float(), _first(out).float(), dim=-1)  # (B, T)
            sums["layers"][i] += _masked_mean(1 - cos, state["mask"]).cpu()
        return hook

    def heads_hook(i):
        def hook(mod, args):
            x = args[0].float()  # (B, T, H * Dh)
            x = x.reshape(*x.shape[:2], H, -1)  # (B, T, H, Dh)
            w = mod.weight.float().reshape(mod.weight.shape[0], H, -1)  # (D, H, Dh)
            norms = torch.einsum("bthd,ehd->bthe", x, w).norm(dim=-1)  # (B, T, H)
            sums["heads"][i] += _masked_mean(norms, state["mask"]).cpu()
        return hook

    def mlp_hook(i):
        def hook(mod, args):
            sums["mlp"][i] += _masked_mean(args[0].float().abs(), state["mask"]).cpu()
        return hook

    def norm_hook(mod, args, out):
        sums["hidden"] += _masked_mean(_first(out).float().abs(), state["mask"]).cpu()

    handles = []
    for i, layer in enumerate(layers):
        handles += [layer.register_forward_hook(block_hook(i), with_kwargs=True),
                    layer.self_attn.o_proj.register_forward_pre_hook(heads_hook(i)),
                    layer.mlp.down_proj.register_forward_pre_hook(mlp_hook(i)),
                    layer.input_layernorm.register_forward_hook(norm_hook),
                    layer.post_attention_layernorm.register_forward_hook(norm_hook)]
    handles.append(model.model.norm.register_forward_hook(norm_hook))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for b in batches:
            ids = b["input_ids"].to(device)
            state["mask"] = b.get("attention_mask", torch.ones_like(ids)).to(device)
            model(input_ids=ids, attention_mask=state["mask"], use_cache=False)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n = max(1, len(batches))
    return Importance(**{k: v / n for k, v in sums.items()})


def _top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, in ascending index order (ties: lower index first)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:k])


def plan(importance: Importance, spec: PruneSpec, config) -> Plan:
    """What to keep for ``spec``, from the scores of ``collect_importance``."""
    L, H = importance.heads.shape
    Hkv = config.num_key_value_heads
    I, D = importance.mlp.shape[1], importance.hidden.shape[0]
    problems = []
    for name, want, have in (("layers", spec.layers, L), ("heads", spec.heads, H),
                             ("mlp", spec.mlp, I), ("hidden", spec.hidden, D)):
        if want < 0 or want > have:
            problems.append(f"prune_{name}: {want} is out of range (1..{have}, 0 = keep all)")
    if spec.heads and spec.heads % Hkv:
        problems.append(f"prune_heads: {spec.heads} must be a multiple of the {Hkv} key/value "
                        f"heads (query heads are kept per group)")
    if problems:
        raise UserError("; ".join(problems))
    keep_layers = _top(importance.layers, spec.layers) if spec.layers else list(range(L))
    G, per_group = H // Hkv, (spec.heads or H) // Hkv

    def layer_heads(i: int) -> list[int]:  # the best per_group heads of each group
        return [g * G + j for g in range(Hkv)
                for j in _top(importance.heads[i, g * G:(g + 1) * G], per_group)]

    heads = [layer_heads(i) for i in keep_layers]
    mlp = [_top(importance.mlp[i], spec.mlp) if spec.mlp else list(range(I)) for i in keep_layers]
    hidden = _top(importance.hidden, spec.hidden) if spec.hidden else list(range(D))
    return Plan(keep_layers, heads, mlp, hidden)


def pruned_config(config, p: Plan):
    cfg = copy.deepcopy(config)
    head_dim = getattr(config, "head_dim", None) or \
        config.hidden_size // config.num_attention_heads
    cfg.head_dim = head_dim  # explicit: hidden / heads no longer gives it
    cfg.num_hidden_layers = len(p.layers)
    cfg.num_attention_heads = len(p.heads[0]) if p.heads else config.num_attention_heads
    cfg.intermediate_size = len(p.mlp[0]) if p.mlp else config.intermediate_size
    cfg.hidden_size = len(p.hidden)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [config.layer_types[i] for i in p.layers]
    return cfg


def _head_rows(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.tensor([h * head_dim + d for h in heads for d in range(head_dim)])


def _sliced_state(model, p: Plan, head_dim: int) -> dict[str, torch.Tensor]:
    """The old weights cut to the plan, under the new model's parameter names."""
    old = model.state_dict()
    hid = torch.tensor(p.hidden)
    out = {}
    for name, t in old.items():
        if not name.startswith("model.layers."):
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                out[name] = t[:, hid]
            elif name == "model.norm.weight":
                out[name] = t[hid]
            else:
                out[name] = t
    for new_i, (i, heads, mlp) in enumerate(zip(p.layers, p.heads, p.mlp)):
        rows, ch = _head_rows(heads, head_dim), torch.tensor(mlp)
        cut = {  # suffix -> (row index or None, column index or None)
            "input_layernorm.weight": (hid, None), "post_attention_layernorm.weight": (hid, None),
            "self_attn.q_proj.weight": (rows, hid), "self_attn.q_proj.bias": (rows, None),
            "self_attn.k_proj.weight": (None, hid), "self_attn.v_proj.weight": (None, hid),
            "self_attn.o_proj.weight": (hid, rows), "self_attn.o_proj.bias": (hid, None),
            "mlp.gate_proj.weight": (ch, hid), "mlp.up_proj.weight": (ch, hid),
            "mlp.down_proj.weight": (hid, ch), "mlp.gate_proj.bias": (ch, None),
            "mlp.up_proj.bias": (ch, None), "mlp.down_proj.bias": (hid, None)}
        prefix = f"model.layers.{i}."
        for name, t in old.items():
            if not name.startswith(prefix):
                continue
            suffix = name[len(prefix):]
            r, c = cut.get(suffix, (None, None))
            if r is not None:
                t = t.index_select(0, r)
            if c is not None:
                t = t.index_select(1, c)
            out[f"model.layers.{new_i}.{suffix}"] = t.clone()
    return out


def apply_plan(model, p: Plan):
    """A new model of the same class holding the kept layers, heads, channels."""
    _check_llama(model)
    cfg = pruned_config(model.config, p)
    param = next(model.parameters())
    with torch.random.fork_rng(devices=[]):
        new = type(model)(cfg).to(dtype=param.dtype)
    state = _sliced_state(model, p, cfg.head_dim)
    missing, unexpected = new.load_state_dict(state, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"pruning left missing {missing[:3]} / unexpected {unexpected[:3]}")
    if cfg.tie_word_embeddings:
        new.tie_weights()
    return new.to(param.device)


def prune(model, spec: PruneSpec, batches: list[dict]) -> tuple[object, Plan, Importance]:
    """Score on ``batches``, plan, cut: (smaller model, plan, importance)."""
    imp = collect_importance(model, batches)
    p = plan(imp, spec, model.config)
    return apply_plan(model, p), p, imp


def non_embedding_params(model) -> int:
    """Parameters outside the token embedding and the LM head (counted once when tied)."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    seen, total = set(), 0
    for prm in model.parameters():
        if id(prm) not in skip and id(prm) not in seen:
            seen.add(id(prm))
            total += prm.numel()
    return total
