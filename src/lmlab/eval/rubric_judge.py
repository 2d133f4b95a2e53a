"""A language model as a judge on a written rubric (RLAIF): pointwise scores, and pairwise
verdicts asked in both orders. Used by ``lmlab preferences labeller=judge``.

Two ways to read the judge's answer:

- ``logprobs`` (default): the judge prompt ends where the answer begins ("Rating: ", "Better
  response:"); one forward gives the next-token distribution and the answer is read from the
  probabilities of the allowed labels ("1".."9", "A"/"B"). Deterministic, never unparseable,
  and usable with judges too small to follow an output format (SmolLM2-135M).
- ``generate``: the judge writes a short answer (greedy, our decode loop) and ``parse_score`` /
  ``parse_choice`` read it; an answer they cannot read is ``None`` (callers count it).

Pairwise verdicts are asked twice, (x, y) and (y, x): a reply wins only when both orders agree,
so a judge that always prefers one position gives ties, not pairs (Zheng et al. 2023,
"Judging LLM-as-a-judge", position bias).

Legend: N judge prompts, V vocabulary, L allowed labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.errors import UserError
from lmlab.textfile import read_text

METHODS = ("logprobs", "generate")

RUBRIC = ("You are a strict judge of answers written by an AI assistant. Rate how good the "
          "response is as a reply to the request: correct, helpful, on topic, clear and concise "
          "answers score high; wrong, off-topic, rambling, repetitive or unsafe answers score "
          "low.")

_POINTWISE = ("{rubric}\n\n[Request]\n{prompt}\n\n[Response]\n{response}\n\n"
              "Give a single whole number from 1 (worst) to {scale} (best).")
_PAIRWISE = ("{rubric}\n\n[Request]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
             "Which response is better? Answer with the letter A or B.")
SCORE_SUFFIX = "Rating:"
CHOICE_SUFFIX = "Better response:"

_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(_WORDS) + r")"
_CHOICE = re.compile(r"\[\[([AB])\]\]|(?i:\b(?:response|answer|assistant|option|choice))\s*:?"
                     r"\s*\(?([AB])\b|\(([AB])\)")


def read_rubric(value: str) -> str:
    """The rubric: the default when empty, the contents of a .txt/.md file, else the text."""
    if not value:
        return RUBRIC
    p = Path(value).expanduser()
    if p.suffix in (".txt", ".md") or p.is_file():
        if not p.is_file():
            raise UserError(f"rubric file {value} does not exist")
        text = read_text(p).strip()
        if not text:
            raise UserError(f"rubric file {value} is empty")
        return text
    return value


# --- parsing free-text answers --------------------------------------------------------------------


def _number(tok: str) -> float:
    return float(_WORDS[tok.lower()]) if tok.lower() in _WORDS else float(tok)


def parse_score(text: str, scale: int) -> float | None:
    """A score in [1, scale] from a judge's free text, or None.

    Reads, in this order: "score/rating: 4" (markdown bold allowed), "8/10" or "8 out of 10"
    (rescaled to ``scale``), then the first whole number in range. Words one..ten count.
    """
    t = text.replace("*", "").strip()
    m = re.search(r"(?:score|rating|grade|rate)\s*(?:is|of|=|:)?\s*" + _NUM
                  + r"(?:\s*(?:/|out of)\s*(\d+))?", t, re.I)
    m = m or re.search(_NUM + r"\s*(?:/|out of)\s*(\d+)", t, re.I)
    if m:
        value = _number(m.group(1))
        if m.group(2):
            denom = float(m.group(2))
            if denom <= 0 or value > denom:
                return None
            value = value * scale / denom
        return value if 1 <= value <= scale else None
    for tok in re.findall(r"(?<![\w.])" + _NUM + r"(?!\w|\.\d)", t, re.I):
        value = _number(tok)
        if 1 <= value <= scale and value == int(value):
            return value
    return None


def parse_choice(text: str) -> str | None:
    """'A' or 'B' from a judge's free text, or None. Explicit forms first ("[[B]]", "Response
    A", "Answer: B", "(A)"; the first one wins: "Response B is better than A" -> B), then the
    only one of A / B standing alone. The letter must be upper case ("a" is an article)."""
    t = text.replace("*", "").strip()
    m = _CHOICE.search(t)
    if m:
        return next(g for g in m.groups() if g)
    # a bare letter, but not the article ("A good answer ...")
    alone = set(re.findall(r"\b([AB])\b(?! (?!(?:or|and|is|wins|seems)\b)[a-z])", t))
    return alone.pop() if len(alone) == 1 else None


# --- the judge ------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """A pairwise verdict after both orders: winner 0 (x), 1 (y) or None (the orders disagree
    or an answer was unreadable); ``p_x`` = P(x is better) averaged over both orders
    (logprobs method only)."""

    winner: int | None
    p_x: float | None
    first: str | None  # the judge's answer with x shown as A
    second: str | None  # its answer with y shown as A


class RubricJudge:
    """A causal LM prompted with a rubric; ``model`` and ``tokenizer`` may be the policy's."""

    def __init__(self, model, tokenizer, *, rubric: str = RUBRIC, scale: int = 5,
                 method: str = "logprobs", max_new_tokens: int = 24, batch_size: int = 8):
        if method not in METHODS:
            raise UserError(f"judge method must be one of {', '.join(METHODS)}, got {method!r}")
        if not 2 <= scale <= 9:
            raise UserError(f"judge scale must be 2..9 (single-digit scores), got {scale}")
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the judge needs a chat model (its tokenizer has no chat template)")
        self.model, self.tokenizer, self.rubric = model, tokenizer, rubric
        self.scale, self.method = scale, method
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.label_mass: list[float] = []  # logprobs: probability the judge put on the labels

    def pointwise_prompt(self, prompt, response: str) -> str:
        return _POINTWISE.format(rubric=self.rubric, prompt=as_text(prompt), response=response,
                                 scale=self.scale)

    def pairwise_prompt(self, prompt, a: str, b: str) -> str:
        return _PAIRWISE.format(rubric=self.rubric, prompt=as_text(prompt), a=a, b=b)

    def score(self, prompts: list, responses: list[str]) -> list[float | None]:
        """A score in [1, scale] per (prompt, response): logprobs - the expected label under
        the judge's distribution; generate - the parsed answer, None when unreadable."""
        users = [self.pointwise_prompt(p, r) for p, r in zip(prompts, responses)]
        if self.method == "generate":
            return [parse_score(t, self.scale) for t in self._generate(users, SCORE_SUFFIX)]
        labels = [str(i) for i in range(1, self.scale + 1)]
        probs = self._label_probs(users, SCORE_SUFFIX, labels)  # (N, L)
        return (probs * torch.arange(1, self.scale + 1, dtype=probs.dtype)).sum(-1).tolist()

    def compare(self, prompts: list, xs: list[str], ys: list[str]) -> list[Verdict]:
        """Is x or y the better reply? Each pair is judged as (A=x, B=y) and (A=y, B=x)."""
        users = [self.pairwise_prompt(p, x, y) for p, x, y in zip(prompts, xs, ys)] + \
                [self.pairwise_prompt(p, y, x) for p, x, y in zip(prompts, xs, ys)]
        n = len(xs)
        if self.method == "generate":
            answers = [parse_choice(t) for t in self._generate(users, CHOICE_SUFFIX)]
            return [_verdict(answers[i], answers[n + i], None) for i in range(n)]
        p_a = self._label_probs(users, CHOICE_SUFFIX, ["A", "B"])[:, 0].tolist()  # (2n,)

        def letter(p):
            return "A" if p > 0.5 else "B" if p < 0.5 else None

        # p_a[i] = P(x better | x shown first); p_a[n + i] = P(y better | y shown first)
        return [_verdict(letter(p_a[i]), letter(p_a[n + i]), (p_a[i] + 1 - p_a[n + i]) / 2)
                for i in range(n)]

    # model calls
    def _render(self, user: str, suffix: str) -> str:
        return self.tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                                  tokenize=False, add_generation_prompt=True) \
            + suffix

    def _generate(self, users: list[str], suffix: str) -> list[str]:
        from lmlab.infer.decode import generate
        from lmlab.infer.sampling import SamplingParams

        params = SamplingParams(temperature=0.0, max_new_tokens=self.max_new_tokens)
        texts = [self._render(u, suffix) for u in users]
        with eval_mode(self.model):
            outs = generate(self.model, self.tokenizer, texts, params, batch_size=self.batch_size)
        return [suffix + o.text for o in outs]

    def _label_probs(self, users: list[str], suffix: str, labels: list[str]) -> torch.Tensor:
        """P(label) renormalised over ``labels``, (N, L); records the raw label mass."""
        suffix, ids = answer_slot(self.tokenizer, suffix, labels)
        logp = next_token_logprobs(self.model, self.tokenizer,
                                   [self._render(u, suffix) for u in users],
                                   self.batch_size)  # (N, V)
        mass = logp[:, ids].exp()  # (N, L)
        self.label_mass += mass.sum(-1).tolist()
        return mass / mass.sum(-1, keepdim=True).clamp(min=1e-30)


def _verdict(first: str | None, second: str | None, p_x: float | None) -> Verdict:
    x_first = {"A": 0, "B": 1}.get(first or "")  # winner when x was shown as A
    x_second = {"A": 1, "B": 0}.get(second or "")  # with y shown as A, "A" means y won
    winner = x_first if x_first is not None and x_first == x_second else None
    return Verdict(winner, p_x, first, second)


def as_text(prompt) -> str:
    """A prompt for quoting inside a judge prompt: text as is, messages as 'role: content'."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


class eval_mode:
    """``with eval_mode(model):`` eval() inside, the previous mode restored after."""

    def __init__(self, model):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)


def answer_slot(tokenizer, suffix: str, labels: list[str]) -> tuple[str, list[int]]:
    """The prompt suffix and each label's token id at the answer position.

    Labels are read as " A" when every spaced label is one token (BPE merges the space into the
    word); otherwise the suffix ends with the space and the bare label is read ("3": SmolLM2
    splits digits from spaces).
    """
    def single(text):
        ids = tokenizer.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    spaced = [single(" " + lab) for lab in labels]
    if all(i is not None for i in spaced):
        return suffix, spaced
    bare = [single(lab) for lab in labels]
    if any(i is None for i in bare):
        raise UserError(f"the judge's tokenizer has no single tokens for the labels {labels}")
    return suffix + " ", bare


@torch.no_grad()
def next_token_logprobs(model, tokenizer, texts: list[str], batch_size: int = 8) -> torch.Tensor:
    """log p(next token | text) for raw texts, (N, V); left-padded batches with positions from
    the mask, so padding does not move the real tokens."""
    from lmlab.infer.decode import left_pad, model_device

    device = model_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    with eval_mode(model):
        for i in range(0, len(texts), batch_size):
            seqs = [tokenizer(t, add_special_tokens=False)["input_ids"]
                    for t in texts[i:i + batch_size]]
            ids, mask = left_pad(seqs, pad, device)  # (B, P)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                           use_cache=False, logits_to_keep=1).logits[:, -1]  # (B, V)
            out.append(torch.log_softmax(logits.float(), -1).cpu())
    return torch.cat(out)


def load_rubric_judge(ref: str, *, device="cpu", dtype=torch.float32, **kw) -> RubricJudge:
    """A judge from any model reference (alias, folder, run folder, tiny:<preset>)."""
    from lmlab.models import load_model, load_tokenizer

    model = load_model(ref, dtype=dtype, device=device, merge_adapter=True).eval()
    return RubricJudge(model, load_tokenizer(ref), **kw)
