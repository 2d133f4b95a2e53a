"""Warning signs of a policy going wrong during online RL, as pure functions of the logged rows.

* reward hacking: the held-out reward went up while the task checker's held-out accuracy went
  down (the reward and the thing it stands for disagree);
* mode collapse: one text makes up most of a rollout of different prompts, or the policy's
  token entropy fell to almost nothing;
* runaway length: responses that used to end now run into ``max_new_tokens``.

Each check looks at the metrics rows (``metrics.jsonl``, oldest first) and the held-out
evaluation before training, and returns ``{kind: message}`` for what it sees.
"""

from __future__ import annotations

from collections import Counter


def top_share(texts: list[str]) -> tuple[float, str]:
    """Fraction of ``texts`` equal to the most common one (after stripping), and that text."""
    if not texts:
        return 0.0, ""
    text, n = Counter(t.strip() for t in texts).most_common(1)[0]
    return n / len(texts), text


def reward_hacking(rows: list[dict], before: dict | None, *, acc_drop: float = 0.05) -> str | None:
    """The latest held-out evaluation against ``before``: reward up, checker accuracy down by at
    least ``acc_drop`` (absolute)."""
    if not before or "eval/accuracy" not in before:
        return None
    evals = [r for r in rows if "eval/accuracy" in r and "eval/reward" in r]
    if not evals:
        return None
    last = evals[-1]
    r0, r1 = before["eval/reward"], last["eval/reward"]
    a0, a1 = before["eval/accuracy"], last["eval/accuracy"]
    if r1 > r0 and a0 - a1 >= acc_drop:
        return (f"reward hacking suspected at update {last.get('step', '?')}: held-out reward "
                f"{r0:.3f} -> {r1:.3f} while task accuracy {a0:.0%} -> {a1:.0%}")
    return None


def mode_collapse(rows: list[dict], *, share_max: float = 0.5,
                  entropy_min: float = 0.05) -> str | None:
    """The latest rollout: one text in at least ``share_max`` of it, or mean token entropy
    below ``entropy_min`` nats."""
    train = [r for r in rows if "train/top_share" in r or "train/entropy" in r]
    if not train:
        return None
    last = train[-1]
    step = last.get("step", "?")
    share = last.get("train/top_share")
    if share is not None and share >= share_max:
        return (f"mode collapse suspected at update {step}: {share:.0%} of the rollout's "
                f"responses are the same text")
    ent = last.get("train/entropy")
    if ent is not None and ent < entropy_min:
        return f"mode collapse suspected at update {step}: token entropy {ent:.3f} nats"
    return None


def runaway_length(rows: list[dict], *, start_max: float = 0.4,
                   now_min: float = 0.8) -> str | None:
    """Truncated fraction: at most ``start_max`` in the first rollout, at least ``now_min`` in
    the latest."""
    train = [r for r in rows if "train/truncated" in r]
    if len(train) < 2:
        return None
    first, last = train[0]["train/truncated"], train[-1]["train/truncated"]
    if first <= start_max and last >= now_min:
        return (f"responses run to max_new_tokens at update {train[-1].get('step', '?')}: "
                f"{first:.0%} truncated at the start, {last:.0%} now")
    return None


def health_warnings(rows: list[dict], before: dict | None) -> dict[str, str]:
    """Every check; ``{kind: message}`` for those that fire."""
    found = {"reward_hacking": reward_hacking(rows, before), "mode_collapse": mode_collapse(rows),
             "runaway_length": runaway_length(rows)}
    return {k: v for k, v in found.items() if v}
