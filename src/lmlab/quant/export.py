"""Quantized model folders that reload, and GGUF export for llama.cpp / ollama users.

Folder formats (``lmlab.json`` names the recipe, so ``lmlab.models.load_model`` reloads any):

- ``transformers``: fp16 / bf16 casts and bitsandbytes models, written by ``save_pretrained``;
  plain ``AutoModelForCausalLM.from_pretrained(folder)`` reloads them too.
- ``lmlab-torch``: torchao and fbgemm models. ``config.json`` plus ``quantized.pt``, the
  state dict with its quantized tensors as they are (int8/int4 data + scales). Reloading
  builds the architecture, applies the same recipe to get the same tensor types, then assigns
  the saved tensors: no re-quantization error.

GGUF: ``export_gguf`` writes a llama-architecture GGUF (f16, q8_0, q4_0 or q4_1) with the
tokenizer and chat template; transformers reads it back with ``from_pretrained(folder,
gguf_file=name)`` and llama.cpp runs it (``lmlab.infer.llamacpp``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch

from lmlab.errors import UserError

WEIGHTS_FILE = "quantized.pt"


# ----------------------------------------------------------------------------- sizes


def tensor_bytes(t) -> int:
    """Bytes a tensor holds as stored: quantized payload + scales for tensor subclasses."""
    if isinstance(t, (tuple, list)):
        return sum(tensor_bytes(x) for x in t)
    if not torch.is_tensor(t):
        return 0
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.nn.Parameter:
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    if t.is_quantized:
        extra = 0
        if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            extra = tensor_bytes(t.q_per_channel_scales()) + \
                tensor_bytes(t.q_per_channel_zero_points())
        return t.numel() * t.element_size() + extra
    return t.numel() * t.element_size()


def _storage_key(t):
    """Equal for views of one storage, so tied weights (detached anew by state_dict) count once."""
    if isinstance(t, (tuple, list)):
        return tuple(_storage_key(x) for x in t)
    if not torch.is_tensor(t):
        return id(t)
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.nn.Parameter:
        names, _ = t.__tensor_flatten__()
        return _storage_key(getattr(t, names[0]))
    try:
        return t.data_ptr()
    except RuntimeError:
        return id(t)


def state_bytes(state: dict) -> int:
    seen, total = set(), 0
    for k, v in state.items():
        key = _storage_key(v)
        if key in seen:
            continue
        seen.add(key)
        if k.endswith("._packed_params") and state.get(k[:-15] + ".dtype") == torch.float16:
            v = (v[0].half(),) + tuple(v[1:])  # fbgemm holds fp16; state_dict unpacks to fp32
        total += tensor_bytes(v)
    return total


def folder_bytes(folder: str | Path, suffixes=(".safetensors", ".pt", ".bin", ".gguf")) -> int:
    """Size on disk of the weight files in a folder."""
    return sum(f.stat().st_size for f in Path(folder).iterdir()
               if f.is_file() and f.suffix in suffixes)


# ----------------------------------------------------------------------------- folders


def save_quantized(model, tokenizer, folder: str | Path, recipe, **meta) -> None:
    """Write ``model`` (quantized by ``recipe``) so that ``load_quantized`` gets it back."""
    from lmlab.models import write_meta
    from lmlab.quant.ptq import BNB, CASTS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if recipe.method in CASTS or recipe.method in BNB:
        fmt = "transformers"
        model.save_pretrained(folder)
    else:
        fmt = "lmlab-torch"
        model.config.save_pretrained(folder)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(folder)
        state = model.state_dict()
        if recipe.method == "fbgemm-fp16":  # packed fp16 weights unpack as fp32: store fp16
            state = _packed_weights(state, torch.float16)
        torch.save(state, folder / WEIGHTS_FILE)
    tokenizer.save_pretrained(folder)
    write_meta(folder, quant={**recipe.as_dict(), "format": fmt}, **meta)


def _packed_weights(state: dict, dtype: torch.dtype) -> dict:
    """Cast the weights inside torch dynamic linears' (weight, bias) packed-param tuples."""
    out = OrderedDict()
    for k, v in state.items():
        if k.endswith("_packed_params._packed_params") and isinstance(v, tuple):
            v = (v[0].to(dtype),) + tuple(v[1:])
        out[k] = v
    if hasattr(state, "_metadata"):  # module versions: load_state_dict needs them
        out._metadata = state._metadata
    return out


def quant_meta(folder: str | Path) -> dict:
    f = Path(folder) / "lmlab.json"
    return json.loads(f.read_text()).get("quant", {}) if f.exists() else {}


def load_quantized(folder: str | Path):
    """A model saved by ``save_quantized``, on CPU, ready for inference."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmlab.quant.ptq import Recipe, quantize_model

    folder = Path(folder)
    q = quant_meta(folder)
    if q.get("format") != "lmlab-torch":
        return AutoModelForCausalLM.from_pretrained(folder)
    recipe = Recipe(q["method"], q.get("group_size", 32), q.get("embeddings", True))
    config = AutoConfig.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):  # the skeleton's random init is overwritten
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    quantize_model(model, recipe)  # same tensor types and shapes as the saved ones
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=False)
    if recipe.method == "fbgemm-fp16":
        state = _packed_weights(state, torch.float32)  # fbgemm packs from fp32
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise UserError(f"{folder / WEIGHTS_FILE} does not match its config: missing {missing[:3]}"
                        f", unexpected {unexpected[:3]}")
    return model.eval()


# ----------------------------------------------------------------------------- GGUF

GGUF_TYPES = ("f16", "q8_0", "q4_0", "q4_1")
# how each type stores the 2-D matrices; llama.cpp's own q4 mixes keep the (tied) embedding
# table in more bits, and the shipped SmolLM2 Q4_1 holds it as q8_0: q4 files do the same here
_MATRIX_TYPE = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1"}
_FILE_TYPE = {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0",
              "q4_1": "MOSTLY_Q4_1"}


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF -> llama.cpp rotary layout for q/k rows (transformers' GGUF loader reverses it)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model) -> list[tuple[str, torch.Tensor]]:
    cfg = model.config
    H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
    sd = model.state_dict()
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"]),
                (f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], H)),
                (f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], Hkv)),
                (f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"]),
                (f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"]),
                (f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]),
                (f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"]),
                (f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"]),
                (f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])]
    out.append(("output_norm.weight", sd["model.norm.weight"]))
    if not getattr(cfg, "tie_word_embeddings", True):
        out.append(("output.weight", sd["lm_head.weight"]))
    return out


def _check_exportable(model) -> None:
    cfg = model.config
    problems = []
    if getattr(cfg, "model_type", "") != "llama":
        problems.append(f"architecture '{getattr(cfg, 'model_type', '?')}' (only llama)")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        problems.append("biases in attention / MLP")
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope != "default":
        problems.append(f"rope_type '{rope}'")
    if any(not p.dtype.is_floating_point or type(p) is not torch.nn.Parameter
           for p in model.parameters()):
        problems.append("quantized weights (export the fp32 model)")
    if problems:
        raise UserError("GGUF export supports plain float llama models; this one has "
                        + ", ".join(problems))


def pre_tokenizer_label(spec: dict) -> str:
    """``tokenizer.ggml.pre`` for a tokenizers JSON spec: the name under which llama.cpp keeps
    the same word-splitting pattern. A plain byte-level pre-tokenizer with its regex (SmolLM2's)
    splits with GPT-2's pattern, llama.cpp's ``gpt-2``; single digits split off first and then
    GPT-2's pattern is llama.cpp's ``smollm``. Anything else gets ``default`` (llama.cpp's own
    pattern, which splits ``don't`` unlike GPT-2's)."""
    def byte_level(p):
        return (p.get("type") == "ByteLevel" and p.get("use_regex", True)
                and not p.get("add_prefix_space", False))

    if spec.get("normalizer"):
        return "default"
    pre = spec.get("pre_tokenizer") or {}
    if byte_level(pre):
        return "gpt-2"
    seq = pre.get("pretokenizers") or []
    if (pre.get("type") == "Sequence" and len(seq) == 2 and seq[0].get("type") == "Digits"
            and seq[0].get("individual_digits") and byte_level(seq[1])):
        return "smollm"
    return "default"


def _add_tokenizer(w, tokenizer) -> None:
    import gguf

    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(tokenizer.all_special_ids) | {
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(n)]
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise UserError(f"GGUF export supports byte-level BPE tokenizers, not {model.get('type')}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    pre = pre_tokenizer_label(spec)
    if pre == "default":
        from lmlab.common import print0

        print0("[lmlab] gguf: this tokenizer's pre-tokenizer has no llama.cpp name; llama.cpp "
               "will split text with its default pattern and may tokenise unlike this tokenizer")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for name, tid in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                      ("unk", tokenizer.unk_token_id), ("pad", tokenizer.pad_token_id)):
        if tid is not None:
            getattr(w, f"add_{name}_token_id")(tid)
    w.add_add_bos_token(False)
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)


@torch.no_grad()
def export_gguf(model, tokenizer, path: str | Path, ftype: str = "q8_0") -> Path:
    """Write a llama GGUF with f16, q8_0, q4_0 or q4_1 matrices, tokenizer included. Norms
    stay f32; q4 files keep the embedding table in q8_0; a matrix whose rows are not a whole
    number of 32-value blocks stays f16."""
    import gguf

    if ftype not in GGUF_TYPES:
        raise UserError(f"gguf: '{ftype}' is not one of {', '.join(GGUF_TYPES)}")
    _check_exportable(model)
    cfg = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    w = gguf.GGUFWriter(str(path) + ".tmp", "llama")
    w.add_name(getattr(cfg, "_name_or_path", "") or "lmlab-model")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPE[ftype]))
    _add_tokenizer(w, tokenizer)
    for name, t in _gguf_tensors(model):
        a = t.detach().float().cpu().numpy()
        qname = _MATRIX_TYPE.get(ftype)
        if name == "token_embd.weight" and ftype.startswith("q4"):
            qname = "Q8_0"
        if a.ndim == 1:
            w.add_tensor(name, a)  # norms stay f32, as llama.cpp's converter keeps them
        elif qname and a.shape[-1] % 32 == 0:
            qt = getattr(gguf.GGMLQuantizationType, qname)
            w.add_tensor(name, gguf.quants.quantize(a, qt), raw_dtype=qt)
        else:
            w.add_tensor(name, a.astype("float16"))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    Path(str(path) + ".tmp").replace(path)
    return path


def load_gguf(path: str | Path, tokenizer: bool = True):
    """(model, tokenizer or None) from a GGUF file through transformers (dequantized to fp32).
    Building the tokenizer from GGUF takes ~10 s for a 49k vocabulary."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name) if tokenizer else None
    return model.eval(), tok
