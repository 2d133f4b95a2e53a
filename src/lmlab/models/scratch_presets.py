"""Size presets and builders for models trained from scratch (`lmlab pretrain`).

Every model is a stock transformers class, so `final/` loads with ``AutoModelForCausalLM`` (or
``AutoModelForMaskedLM`` for the encoders) and every later stage takes it unchanged. The
position scheme picks the class:

| position | class | why this one |
|---|---|---|
| ``rope`` | ``LlamaForCausalLM`` | the SmolLM2 body: RMSNorm, SwiGLU, rotary |
| ``none`` | ``SmolLM3ForCausalLM``, ``no_rope_layers=[0]*L`` | the same body, rotary off |
| ``learned`` | ``GPT2LMHeadModel`` | absolute learned positions (nanoGPT's model) |
| ``alibi`` | ``FalconForCausalLM``, ``alibi=True`` | ALiBi through SDPA and the 4D mask |

``none`` is NoPE: SmolLM3 switches rotary off per layer, so it is the one class that isolates
"no position signal" on the Llama body. BLOOM and MPT also have ALiBi, but compute attention
by hand (no SDPA); Falcon adds the bias to the mask that SDPA takes.

Encoders (``mlm``, ``electra``) are ``BertForMaskedLM`` and ``ElectraForPreTraining`` +
``ElectraForMaskedLM`` with learned absolute positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.errors import ConfigError

# name: (layers, heads, width, context)
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (2, 2, 32, 32),  # tests
    "nano": (4, 4, 128, 64),  # nanoGPT's char-level CPU recipe
    "micro": (6, 6, 192, 128),
    "mini": (6, 6, 384, 256),  # nanoGPT's shakespeare-char GPU recipe
    "small": (12, 12, 768, 1024),  # GPT-2 small
}
POSITIONS = ("rope", "learned", "none", "alibi")
DECODER_CLASSES = {"rope": "LlamaForCausalLM", "none": "SmolLM3ForCausalLM",
                   "learned": "GPT2LMHeadModel", "alibi": "FalconForCausalLM"}


@dataclass(frozen=True)
class Size:
    layers: int
    heads: int
    width: int
    context: int

    @property
    def swiglu_hidden(self) -> int:
        """SwiGLU width with the parameters of a 4x GELU MLP (3 matrices of 8/3 d), /16."""
        return max(16, round(8 * self.width / 3 / 16) * 16)


def size(preset: str, *, layers: int = 0, heads: int = 0, width: int = 0,
         context: int = 0) -> Size:
    """The preset's shape with any non-zero override; a ConfigError names the problem."""
    if preset not in PRESETS:
        import difflib

        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"preset: unknown size preset '{preset}'{hint}; known: "
                          f"{', '.join(PRESETS)}")
    base = PRESETS[preset]
    s = Size(layers or base[0], heads or base[1], width or base[2], context or base[3])
    if s.width % s.heads:
        raise ConfigError(f"width: {s.width} is not divisible by heads={s.heads}")
    if (s.width // s.heads) % 2:
        raise ConfigError(f"width/heads = {s.width // s.heads} is odd; rotary needs an even "
                          f"head size")
    return s


def _ids(tokenizer) -> dict:
    return {"bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None
                else tokenizer.eos_token_id,
                "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def decoder_config(s: Size, position: str, vocab: int, tokenizer, dropout: float = 0.0):
    """The transformers config of a decoder of shape ``s`` with position scheme ``position``."""
    import transformers as tf

    ids = _ids(tokenizer)
    if position in ("rope", "none"):
        common = dict(vocab_size=vocab, hidden_size=s.width, intermediate_size=s.swiglu_hidden,
                      num_hidden_layers=s.layers, num_attention_heads=s.heads,
                      num_key_value_heads=s.heads, max_position_embeddings=s.context,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, attention_dropout=dropout,
                      **ids)
        if position == "rope":
            return tf.LlamaConfig(**common)
        return tf.SmolLM3Config(no_rope_layers=[0] * s.layers, **common)
    if position == "learned":
        return tf.GPT2Config(vocab_size=vocab, n_positions=s.context, n_embd=s.width,
                             n_layer=s.layers, n_head=s.heads, activation_function="gelu",
                             resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                             tie_word_embeddings=True, **ids)
    if position == "alibi":
        return tf.FalconConfig(vocab_size=vocab, hidden_size=s.width, num_hidden_layers=s.layers,
                               num_attention_heads=s.heads, num_kv_heads=s.heads, alibi=True,
                               new_decoder_architecture=False, multi_query=False,
                               parallel_attn=False, bias=False, activation="gelu",
                               ffn_hidden_size=4 * s.width, max_position_embeddings=s.context,
                               hidden_dropout=dropout, attention_dropout=dropout,
                               tie_word_embeddings=True, **ids)
    raise ConfigError(f"position: unknown scheme '{position}'; known: {', '.join(POSITIONS)}")


def encoder_config(s: Size, vocab: int, tokenizer, dropout: float = 0.0, *,
                   kind: str = "bert"):
    """BERT or ELECTRA config (learned absolute positions). ``kind``: bert | discriminator |
    generator (ELECTRA's small MLM: a quarter of the width, the paper's 1/4-1/2)."""
    import transformers as tf

    small = kind == "generator"
    width = max(2 * s.heads, s.width // 4) if small else s.width
    heads = max(1, s.heads // 4) if small else s.heads
    kw = {"vocab_size": vocab, "hidden_size": width, "num_hidden_layers": s.layers,
              "num_attention_heads": heads, "intermediate_size": 4 * width,
              "max_position_embeddings": s.context, "hidden_dropout_prob": dropout,
              "attention_probs_dropout_prob": dropout, "type_vocab_size": 1,
              "pad_token_id": tokenizer.pad_token_id}
    if kind == "bert":
        return tf.BertConfig(**kw)
    return tf.ElectraConfig(embedding_size=s.width, **kw)


def _seeded(build, seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_decoder(s: Size, position: str, tokenizer, *, dropout: float = 0.0, seed: int = 0):
    """A seeded random decoder (SDPA attention); the global RNG is left as it was."""
    from transformers import AutoModelForCausalLM

    config = decoder_config(s, position, len(tokenizer), tokenizer, dropout)
    config._attn_implementation = "sdpa"
    return _seeded(lambda: AutoModelForCausalLM.from_config(config, attn_implementation="sdpa"),
                   seed)


def build_bert(s: Size, tokenizer, *, dropout: float = 0.0, seed: int = 0):
    from transformers import BertForMaskedLM

    c = encoder_config(s, len(tokenizer), tokenizer, dropout)
    return _seeded(lambda: BertForMaskedLM(c), seed)


class ElectraPair(torch.nn.Module):
    """ELECTRA's generator (a small MLM) and discriminator, sharing token embeddings.

    Composition of two stock classes: ``generator`` is ``ElectraForMaskedLM``,
    ``discriminator`` is ``ElectraForPreTraining``; the discriminator's word, position and
    type embeddings are the generator's (the paper ties them when sizes differ via
    ``embedding_size`` + a projection, which ElectraModel has)."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.discriminator.electra.embeddings = self.generator.electra.embeddings

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, seed: int,
                attention_mask: torch.Tensor | None = None):
        """Generator logits (B, T, V), discriminator logits (B, T) on the generator's samples
        (drawn without gradient by a generator seeded ``seed``) and which tokens they
        replaced (B, T)."""
        from lmlab.losses.pretrain import IGNORE, electra_replace

        gen_logits = self.generator(input_ids=input_ids, attention_mask=attention_mask).logits
        chosen = labels != IGNORE
        with torch.no_grad():
            probs = torch.softmax(gen_logits[chosen].float(), dim=-1)  # (M, V)
            g = torch.Generator(device=probs.device).manual_seed(int(seed))
            drawn = torch.multinomial(probs, 1, generator=g).squeeze(-1)
        samples = input_ids.clone()
        samples[chosen] = drawn
        corrupted, replaced = electra_replace(input_ids, labels, samples)
        disc_logits = self.discriminator(input_ids=corrupted,
                                         attention_mask=attention_mask).logits  # (B, T)
        return gen_logits, disc_logits, replaced

    def save_pretrained(self, folder, **kw) -> None:
        from pathlib import Path

        self.discriminator.save_pretrained(folder, **kw)
        self.generator.save_pretrained(Path(folder) / "generator", **kw)


def build_electra(s: Size, tokenizer, *, dropout: float = 0.0, seed: int = 0) -> ElectraPair:
    from transformers import ElectraForMaskedLM, ElectraForPreTraining

    gen_c = encoder_config(s, len(tokenizer), tokenizer, dropout, kind="generator")
    disc_c = encoder_config(s, len(tokenizer), tokenizer, dropout, kind="discriminator")
    return _seeded(lambda: ElectraPair(ElectraForMaskedLM(gen_c),
                                       ElectraForPreTraining(disc_c)), seed)


def context_limit(model) -> int | None:
    """The longest sequence the model's position scheme allows (None: no fixed limit)."""
    c = getattr(model, "config", None)
    if c is None and hasattr(model, "discriminator"):
        c = model.discriminator.config
    for key in ("n_positions", "max_position_embeddings"):
        v = getattr(c, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None
