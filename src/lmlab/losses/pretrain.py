"""The pretraining paradigms as pure functions: input corruptions and losses.

Every loss returns a *sum* over its units (tokens, masked tokens) and the unit count, so the
shared loop normalises by the units of the whole optimizer step. Labels are already aligned to
the logits: ``logits[b, t]`` is scored against ``labels[b, t]`` (-100 = not trained). The
corruptions take their random draws as tensors (``*_from``) so a test can pass them by hand;
the seeded wrappers draw them from a ``torch.Generator``.

| paradigm | input | trained to predict |
|---|---|---|
| clm | tokens 0..T-1, causal | token t+1 at every t |
| mlm | 15% chosen: 80% ``<mask>``, 10% random, 10% kept; bidirectional | the chosen originals |
| span | spans -> sentinels, then ``s0 span0 s1 span1 ...`` (decoder-only T5) | the targets |
| prefix | a bidirectional prefix of random length p, causal after it | tokens p..T |
| electra | mlm for the generator; its samples put in | each token: replaced? |

Legend: B batch, T time, V vocabulary, S spans.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

IGNORE = -100


# --- losses -------------------------------------------------------------------------------------


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of logits (B, T, V) against aligned labels (B, T); (sum, count)."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                           reduction="sum")
    return loss, int((labels != IGNORE).sum())


def replaced_token_loss(logits: torch.Tensor, replaced: torch.Tensor,
                        valid: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """ELECTRA's discriminator: summed binary cross-entropy of logits (B, T) against
    ``replaced`` (B, T) bool, over ``valid`` tokens (default all); (sum, count)."""
    per = F.binary_cross_entropy_with_logits(logits.float(), replaced.float(), reduction="none")
    if valid is not None:
        per = per * valid
        return per.sum(), int(valid.sum())
    return per.sum(), per.numel()


def electra_loss(gen_logits: torch.Tensor, mlm_labels: torch.Tensor, disc_logits: torch.Tensor,
                 replaced: torch.Tensor, weight: float = 50.0
                 ) -> tuple[torch.Tensor, int, dict]:
    """ELECTRA: mean generator MLM loss + ``weight`` x mean discriminator loss (the paper's
    lambda = 50), written as a sum over the masked tokens: returns (sum, masked count, parts)
    with ``sum / count`` = gen_mean + weight * disc_mean."""
    gen_sum, m = token_loss(gen_logits, mlm_labels)
    disc_sum, n = replaced_token_loss(disc_logits, replaced)
    total = gen_sum + weight * disc_sum * (m / max(n, 1))
    acc = ((disc_logits > 0) == replaced).float().sum()
    return total, m, {"gen_loss": float(gen_sum.detach()),
                      "disc_loss": float(disc_sum.detach()) * m / max(n, 1),
                      "disc_accuracy": float(acc) * m / max(n, 1)}


# --- clm ----------------------------------------------------------------------------------------


def clm_batch(w: torch.Tensor) -> dict:
    """Windows (B, T+1) -> inputs (B, T) and next-token labels (B, T): views, no copy."""
    return {"input_ids": w[:, :-1], "labels": w[:, 1:]}


# --- mlm ----------------------------------------------------------------------------------------


def mlm_corrupt_from(ids: torch.Tensor, u_select: torch.Tensor, u_action: torch.Tensor,
                     random_ids: torch.Tensor, *, mask_id: int, special: torch.Tensor,
                     p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking from given draws (all (B, T)): a non-special token is chosen when
    ``u_select < p`` (a row with none chosen gets its lowest draw chosen, so every row trains);
    a chosen token becomes ``mask_id`` when ``u_action < 0.8``, ``random_ids`` when
    ``0.8 <= u_action < 0.9``, else stays. Returns (inputs, labels: originals at chosen)."""
    ordinary = ~torch.isin(ids, special)
    chosen = (u_select < p) & ordinary
    lowest = u_select.masked_fill(~ordinary, 2.0).argmin(dim=1)  # (B,)
    none = ~chosen.any(dim=1) & ordinary.any(dim=1)
    chosen[none, lowest[none]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    to_mask = chosen & (u_action < 0.8)
    to_random = chosen & (u_action >= 0.8) & (u_action < 0.9)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id),
                         torch.where(to_random, random_ids, ids))
    return inputs, labels


def mlm_corrupt(ids: torch.Tensor, generator: torch.Generator, *, mask_id: int, vocab: int,
                special: torch.Tensor, p: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """``mlm_corrupt_from`` with its draws from ``generator`` (same generator state, same
    result)."""
    u_select = torch.rand(ids.shape, generator=generator)
    u_action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(vocab, ids.shape, generator=generator)
    return mlm_corrupt_from(ids, u_select, u_action, random_ids, mask_id=mask_id,
                            special=special, p=p)


def electra_replace(inputs: torch.Tensor, labels: torch.Tensor, samples: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's input: the generator's ``samples`` (B, T) at masked positions
    (labels != -100), the original elsewhere; and which tokens differ from the original (a
    sample equal to the original counts as not replaced, as in the paper)."""
    chosen = labels != IGNORE
    original = torch.where(chosen, labels, inputs)
    corrupted = torch.where(chosen, samples, inputs)
    return corrupted, corrupted != original


# --- span corruption ------------------------------------------------------------------------------


def span_counts(length: int, density: float = 0.15, mean_span: float = 3.0) -> tuple[int, int]:
    """(noise tokens, spans) for a source of ``length`` tokens, as T5 fixes them."""
    noise = min(max(1, round(length * density)), length - 1)
    return noise, max(1, min(noise, round(noise / mean_span)))


def span_source_length(max_len: int, density: float = 0.15, mean_span: float = 3.0) -> int:
    """The longest source whose decoder-only sentinel sequence (source + 2 x spans tokens,
    less one for the shift) fits ``max_len``."""
    n = max_len
    while n > 2 and n + 2 * span_counts(n, density, mean_span)[1] - 1 > max_len:
        n -= 1
    return n


def _split(total: int, parts: int, generator: torch.Generator) -> list[int]:
    """``total`` split into ``parts`` positive lengths at random cut points."""
    cuts = (torch.randperm(total - 1, generator=generator)[:parts - 1] + 1).sort().values
    edges = [0, *cuts.tolist(), total]
    return [b - a for a, b in itertools.pairwise(edges)]


def span_corrupt_from(ids: list[int], noise_lengths: list[int], keep_lengths: list[int],
                      sentinels: list[int]) -> tuple[list[int], list[int]]:
    """Decoder-only T5: ``ids`` cut into keep_0 noise_0 keep_1 noise_1 ...; the sequence is
    ``keep_0 s_0 keep_1 s_1 ... | s_0 noise_0 s_1 noise_1 ...``. Returns (inputs, labels) of
    that sequence shifted by one, with labels only on the target half (the token after each
    position from the last input token on)."""
    source, target, at = [], [], 0
    for k, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        source += ids[at:at + keep] + [sentinels[k]]
        at += keep
        target += [sentinels[k]] + ids[at:at + noise]
        at += noise
    seq = source + target
    labels = [IGNORE] * (len(source) - 1) + seq[len(source):]
    return seq[:-1], labels


def span_corrupt(ids: torch.Tensor, generator: torch.Generator, *, sentinels: list[int],
                 density: float = 0.15, mean_span: float = 3.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids (B, T) span-corrupted with T5's fixed noise and span counts (random
    lengths): inputs and labels (B, T + 2S - 1)."""
    T = ids.size(1)
    noise, spans = span_counts(T, density, mean_span)
    rows_in, rows_lab = [], []
    for row in ids.tolist():
        noise_l = _split(noise, spans, generator)
        keep_l = _split(T - noise, spans, generator)
        a, b = span_corrupt_from(row, noise_l, keep_l, sentinels)
        rows_in.append(a)
        rows_lab.append(b)
    return torch.tensor(rows_in), torch.tensor(rows_lab)


# --- prefix lm ----------------------------------------------------------------------------------


def prefix_lm_mask(prefix: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, T, T) bool: query i sees key j when j <= i or j is in the prefix (j < p_b) - the
    prefix is bidirectional, the rest causal. prefix (B,) lengths."""
    i = torch.arange(T)
    causal = i[None, :] <= i[:, None]  # (T, T): [query, key]
    in_prefix = i[None, None, :] < prefix[:, None, None]  # (B, 1, T) over keys
    return (causal[None] | in_prefix)[:, None]


def prefix_lm_labels(labels: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Next-token labels (B, T) kept from position p-1 on (the first prediction of a token
    outside the prefix); inside the prefix a position sees the token it would predict."""
    t = torch.arange(labels.size(1))
    return labels.masked_fill(t[None, :] < (prefix[:, None] - 1), IGNORE)
