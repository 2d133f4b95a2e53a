"""Prompt tuning, P-tuning and prefix tuning (peft's prompt encoders) as a causal LM that the
project's own loop, losses and KV-cache decoding can call like any transformers model.

peft's prompt-learning models prepend virtual tokens to the input: their logits are n longer
than the input, ``position_ids`` are dropped and a KV cache must be empty, so our objectives
(``logits_to_keep`` positions), ``infer.decode`` (its own cache and position ids) and
``serve`` could not run them. Here the virtual tokens live in the KV cache instead, which is
the same computation (attention is causal: the virtual tokens never see the input):

- prefix tuning: peft's ``get_prompt`` already gives per-layer keys/values (n virtual tokens);
- prompt tuning / P-tuning: ``get_prompt`` gives n input embeddings; one forward pass of the
  frozen decoder over them writes their keys/values (positions 0..n-1) into the cache.

Then the real tokens run with the attention mask widened by n ones and position ids shifted by
n (peft's positions: the input follows the virtual tokens). The parameters, the saved adapter
(``adapter_config.json`` + ``adapter_model.safetensors``) and the loading stay peft's.
"""

from __future__ import annotations

import torch
from torch import nn

from lmlab.models.compat import _cache_keyword

PROMPT_LEARNING = {"PROMPT_TUNING": "prompt", "P_TUNING": "ptuning", "PREFIX_TUNING": "prefix"}


def is_prompt_learning(model) -> bool:
    cfg = getattr(model, "active_peft_config", None)
    return cfg is not None and str(getattr(cfg.peft_type, "value", cfg.peft_type)) in \
        PROMPT_LEARNING


class VirtualTokensLM(nn.Module):
    """A peft prompt-learning model (``PeftModelForCausalLM``) behind the transformers causal-LM
    call: ``forward(input_ids, attention_mask, position_ids, <cache>, use_cache,
    logits_to_keep)`` with logits for the real tokens only."""

    def __init__(self, peft_model):
        super().__init__()
        self.peft = peft_model
        cfg = peft_model.active_peft_config
        self.kind = PROMPT_LEARNING[str(getattr(cfg.peft_type, "value", cfg.peft_type))]
        self.num_virtual = int(cfg.num_virtual_tokens)
        self._key = _cache_keyword(type(self.get_base_model()))

    # --- what callers read from a transformers model
    def get_base_model(self) -> nn.Module:
        return self.peft.get_base_model()

    @property
    def config(self):
        return self.get_base_model().config

    @property
    def generation_config(self):
        return self.get_base_model().generation_config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, folder, **kw) -> None:
        self.peft.save_pretrained(folder, **kw)

    # --- the forward pass
    def _write_prefix(self, cache, batch: int) -> None:
        """The virtual tokens' keys/values for ``batch`` rows into the empty ``cache``."""
        base = self.get_base_model()
        if self.kind == "prefix":
            prompt = self.peft.get_prompt(batch)  # a DynamicCache: (B, Hkv, n, Dh) per layer
            for i, layer in enumerate(prompt.layers):
                cache.update(layer.keys, layer.values, i)
            return
        emb = self.peft.get_prompt(batch)  # (B, n, D)
        body = getattr(base, base.base_model_prefix)
        dtype = body.get_input_embeddings().weight.dtype
        body(inputs_embeds=emb.to(dtype), **{_cache_keyword(type(body)): cache}, use_cache=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, use_cache: bool | None = None,
                **kw):
        from transformers import DynamicCache

        cache = kw.pop("cache", None)
        cache = kw.pop("past_key_values", None) if cache is None else cache
        base = self.get_base_model()
        B, n = input_ids.shape[0], self.num_virtual
        if cache is None:
            cache = DynamicCache(config=base.config)
        if cache.get_seq_length() == 0:
            self._write_prefix(cache, B)
        if attention_mask is not None:  # (B, L) -> (B, n + L): the virtual tokens are real
            ones = attention_mask.new_ones(B, n)
            attention_mask = torch.cat([ones, attention_mask], dim=1)
        if position_ids is not None:
            position_ids = position_ids + n
        return base(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids, use_cache=use_cache, **{self._key: cache}, **kw)
