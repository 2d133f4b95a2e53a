"""OpenAI request bodies (pydantic), their mapping to ``SamplingParams``, and response pieces.

Only the fields we honour are declared; unknown fields are ignored (OpenAI clients send some
we have no use for, e.g. ``user``). Types and ranges are checked by pydantic (-> 422); limits
that depend on the server's config (max_tokens, n) are checked in ``app.py`` (-> 400).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from lmlab.infer.sampling import SamplingParams


MAX_STOP = 4  # OpenAI's limit on stop sequences
_INT64 = 2**63  # torch seeds are 64-bit; seed + choice index must still fit


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str
    max_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[int, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    stream_options: dict | None = None
    ignore_eos: bool = False  # an extension (vLLM has it too): exactly max_tokens tokens

    def stops(self) -> list[str]:
        s = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [x for x in s if x]

    def sampling(self, max_tokens: int, index: int = 0, logprobs: bool = False) -> SamplingParams:
        """Choice ``index``'s parameters: with a seed, choice i draws from seed + i (so the n
        choices differ and the request is reproducible)."""
        return SamplingParams(
            max_new_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            logit_bias=dict(self.logit_bias or {}), stop=self.stops(), logprobs=logprobs,
            ignore_eos=self.ignore_eos,
            seed=None if self.seed is None else self.seed + index)

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class ChatRequest(_Body):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20)

    def chat(self) -> list[dict]:
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None \
            else self.max_tokens


class CompletionRequest(_Body):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=0)  # the OpenAI default for completions
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings: text inputs (token arrays are refused in app.py)."""

    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def envelope(kind: str, rid: str, model: str, choices: list, created: int | None = None,
             **extra) -> dict:
    return {"id": rid, "object": kind, "created": created or int(time.time()), "model": model,
            "choices": choices, **extra}


def chat_logprobs(items: list) -> dict:
    """Deltas' logprobs [(text, lp, [(alt, lp)])] -> the chat ``logprobs`` object."""
    return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                         "top_logprobs": [{"token": a, "logprob": v, "bytes": list(a.encode())}
                                          for a, v in top]} for t, lp, top in items]}


def completion_logprobs(items: list, offset: int = 0) -> dict:
    """The legacy completions ``logprobs`` object."""
    offsets, pos = [], offset
    for t, _, _ in items:
        offsets.append(pos)
        pos += len(t)
    return {"tokens": [t for t, _, _ in items], "token_logprobs": [lp for _, lp, _ in items],
            "top_logprobs": [dict(top) for _, _, top in items], "text_offset": offsets}
