"""Scalar heads by composition: a standard causal LM (optionally with LoRA) plus one
``nn.Linear(hidden, 1)`` read at the last real token. No model subclass.

A saved reward model is a folder with the LM (full weights, or a LoRA adapter whose base is
named in ``lmlab.json``), the tokenizer, ``reward_head.safetensors``, and ``lmlab.json`` with
``"head": "reward"``; ``load_model`` refuses such a folder as a policy, and
``load_reward_model`` refuses a folder without it.

Legend: B rows, T time, H hidden size.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import ModelRefError

HEAD_FILE = "reward_head.safetensors"


def decoder_of(lm: nn.Module) -> nn.Module:
    """The transformer body (no LM head) of a causal LM or a peft-wrapped one; LoRA layers are
    injected in place, so the body runs them."""
    base = lm.get_base_model() if hasattr(lm, "peft_config") else lm
    return base.get_decoder()


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for right or left padding: (B, T) -> (B,)."""
    T = attention_mask.shape[1]
    positions = torch.arange(T, device=attention_mask.device).expand_as(attention_mask)
    return (positions * attention_mask.long()).argmax(dim=1)


class RewardModel(nn.Module):
    """r(x, y) = w . h_last + b, where h_last is the final hidden state at the last real token.

    ``lm`` is a transformers causal LM (its LM head is unused); ``tokenizer`` is needed only by
    ``score``.
    """

    def __init__(self, lm: nn.Module, head: nn.Linear | None = None, tokenizer=None):
        super().__init__()
        self.lm = lm
        hidden = lm.config.hidden_size
        if head is None:
            head = nn.Linear(hidden, 1)
            nn.init.normal_(head.weight, std=1 / (hidden + 1) ** 0.5)
            nn.init.zeros_(head.bias)
            dtype = next(lm.parameters()).dtype
            head = head.to(device=next(lm.parameters()).device, dtype=dtype)
        self.head = head
        self.tokenizer = tokenizer

    @property
    def config(self):
        return self.lm.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **_) -> torch.Tensor:
        """(B, T) -> scores (B,)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = decoder_of(self.lm)(input_ids=input_ids, attention_mask=attention_mask,
                                     use_cache=False).last_hidden_state  # (B, T, H)
        last = hidden[torch.arange(hidden.shape[0]), last_token_index(attention_mask)]  # (B, H)
        return self.head(last).squeeze(-1).float()

    @torch.no_grad()
    def score(self, prompts: list, responses: list[str], *, batch_size: int = 16,
              max_len: int | None = None) -> list[float]:
        """Rewards for (prompt, response) pairs, rendered with the chat template exactly as in
        training; prompts are strings (one user turn) or message lists."""
        from lmlab.data import collate, encode_chat

        if self.tokenizer is None:
            raise ValueError("score() needs the tokenizer (load_reward_model sets it)")
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        limit = max_len or 10**9
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out: list[float] = []
        for i in range(0, len(prompts), batch_size):
            rows = [encode_chat(self.tokenizer, _conversation(p, r), limit, train_on="last")
                    for p, r in zip(prompts[i:i + batch_size], responses[i:i + batch_size])]
            batch = collate(rows, self.tokenizer.pad_token_id)
            out += self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).tolist()
        self.train(was_training)
        return out


def _conversation(prompt, response: str) -> list[dict]:
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return msgs + [{"role": "assistant", "content": response}]


# --- save / load ----------------------------------------------------------------------------------


def save_reward_model(model: RewardModel, folder: str | Path, *, base: str | None = None,
                      **meta) -> None:
    """Write the LM (a LoRA adapter is saved alone, naming ``base``), the tokenizer, the head and
    ``lmlab.json``."""
    from safetensors.torch import save_file

    from lmlab.models.load import write_meta

    folder = Path(folder)
    model.lm.save_pretrained(folder)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
              str(folder / HEAD_FILE))
    adapter = hasattr(model.lm, "peft_config")
    if adapter and not base:
        raise ValueError("saving a LoRA reward model needs the base model reference")
    write_meta(folder, head="reward", hidden_size=model.config.hidden_size,
               **({"base": base} if adapter else {}), **meta)


def _reward_folder(ref: str) -> Path:
    p = Path(ref).expanduser()
    if (p / "final").is_dir():
        p = p / "final"
    if not p.is_dir():
        raise ModelRefError(f"reward model '{ref}' is not a folder (expected the final/ of an "
                            f"`lmlab reward` run, or its run folder)")
    meta_file = p / "lmlab.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if meta.get("head") != "reward" or not (p / HEAD_FILE).exists():
        raise ModelRefError(f"{p} is not a reward model (no 'head: reward' in lmlab.json and no "
                            f"{HEAD_FILE}); it looks like a causal LM policy. Train a reward model "
                            f"with `lmlab reward`.")
    return p


def load_reward_model(ref: str, *, dtype: torch.dtype = torch.float32,
                      device: str | torch.device = "cpu") -> RewardModel:
    """A saved reward model (folder or run folder), ready for ``score``."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmlab.models.load import load_model

    folder = _reward_folder(ref)
    meta = json.loads((folder / "lmlab.json").read_text())
    if (folder / "adapter_config.json").exists():
        from peft import PeftModel

        lm = PeftModel.from_pretrained(load_model(meta["base"], dtype=dtype, merge_adapter=True),
                                       str(folder))
    else:
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    head = nn.Linear(lm.config.hidden_size, 1)
    head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = RewardModel(lm, head.to(dtype), tok).to(device)
    model.eval()
    return model
