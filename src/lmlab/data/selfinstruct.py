"""Self-instruct (Wang et al. 2022): a model grows a pool of instructions from a few seeds.

One round: show the model ``k`` tasks from the pool, sample a new task (an instruction and an
optional input), answer it with the same model (greedy), then filter. The filters, in order,
each with the reason a rejected candidate is counted under:

- ``unparsable``: no instruction could be read from the generation;
- ``too_short`` / ``too_long``: instruction words outside ``[min_words, max_words]``, an
  answer longer than ``max_output_words``, a task or an answer cut off by the token budget;
- ``format``: the instruction does not start with a letter, holds format labels ("Task:",
  "Answer:") or several lines, or speaks as the assistant ("I'm ready to help..."); the answer is empty or repeats the instruction;
- ``blacklist``: asks for what a text model cannot do (images, files, audio, ...), as in the
  paper;
- ``not_novel``: ROUGE-L with some instruction already in the pool >= ``novelty``
  (``lmlab.eval.rouge``; the paper's threshold is 0.7);
- ``checker``: the instruction is one of lmlab's built-in tasks (``reference_answer`` reads
  sums, differences, comparisons, conversions, sorts and reversals) and the task's strict
  checker rejects the model's answer;
- ``judge``: an LLM judge's rubric score is below the minimum (optional).

A kept task joins the pool at once, so later near-duplicates of it are rejected too. The loop
(``grow``) takes the model as two functions, so it is tested with hand-made generations.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from lmlab.errors import DataError

REASONS = ("unparsable", "too_short", "too_long", "format", "blacklist", "not_novel", "checker",
           "judge")
# Self-instruct's list of what a language model cannot do (Wang et al. 2022, section 2.3).
BLACKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
SEED_TASKS = (  # written for lmlab: a few built-in task shapes and a few open ones
    {"instruction": "What is 47 + 385?", "output": "432"},
    {"instruction": "Sort these numbers from smallest to largest.", "input": "42, 7, 93, 18",
     "output": "7, 18, 42, 93"},
    {"instruction": "Which number is larger, 618 or 681?", "output": "681"},
    {"instruction": "Convert 4 hours to minutes.", "output": "240"},
    {"instruction": "Reverse the letters of the word 'lamp'.", "output": "pmal"},
    {"instruction": "Give a word that means the opposite of 'early'.", "output": "late"},
    {"instruction": "Name the capital city of Italy.", "output": "Rome"},
    {"instruction": "Rewrite the sentence in the past tense.", "input": "She walks to school.",
     "output": "She walked to school."},
)
_GENERATE = ("Here are some tasks for an assistant:\n\n{examples}\n\nWrite one new task that is "
             "different from all of these. Reply with a line that starts with \"Task:\" (and a "
             "line \"Input:\" if the task needs one), nothing else.")
# A "task" in the assistant's own voice ("I'm ready to help. What can I do for you?") is the
# model chatting, not an instruction. SmolLM2-135M at T=1.0, 16 candidates (2026-12-07): of the
# 6 the other filters kept, 2 spoke as the assistant, 3 were gibberish, 1 was a real task.
_ASSISTANT_VOICE = re.compile(r"^(i|i'm|i am|i'll|i will|sure|here's|here is|hello|hi|thanks?|"
                              r"thank you|can i|may i|let me|as an)\b", re.IGNORECASE)
_LABEL = re.compile(r"^\W*(task|instruction|input|answer|output)\s*\d*\s*[:.]\s*", re.IGNORECASE)
_NUM = re.compile(r"\d+")


@dataclass(frozen=True)
class Limits:
    novelty: float = 0.7
    min_words: int = 3
    max_words: int = 60
    max_output_words: int = 100


@dataclass
class Candidate:
    instruction: str
    input: str = ""
    output: str = ""
    truncated: bool = False
    reason: str | None = None
    rouge: float = 0.0
    task: str | None = None  # the built-in task the instruction maps to, if any
    answer: str | None = None  # that task's answer
    extra: dict = field(default_factory=dict)

    def prompt(self) -> str:
        return self.instruction + (f"\n\n{self.input}" if self.input else "")

    def row(self, source: str) -> dict:
        """An SFT row (prompt / completion; ``lmlab sft`` reads it as a chat turn)."""
        out = {"prompt": self.prompt(), "completion": self.output, "source": source}
        return out | ({"task": self.task} if self.task else {})


# --- seeds --------------------------------------------------------------------------------------


def read_seeds(path: str) -> list[dict]:
    """Seed tasks from a JSONL file of ``{instruction, input?, output}`` (empty path: the
    built-in ``SEED_TASKS``)."""
    import json

    from lmlab.textfile import read_lines

    if not path:
        return [dict(s) for s in SEED_TASKS]
    rows = []
    for line_no, text in read_lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg})", file=path, line=line_no) from None
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", file=path, line=line_no)
        for key, need in (("instruction", True), ("input", False), ("output", True)):
            value = row.get(key, "" if not need else None)
            if not isinstance(value, str) or (need and not value.strip()):
                raise DataError("missing or empty" if need and not value else
                                f"expected a string, got {type(value).__name__}",
                                file=path, line=line_no, field=key)
        rows.append({k: row[k].strip() for k in ("instruction", "input", "output") if k in row})
    if not rows:
        raise DataError("no seed tasks (the file is empty)", file=path)
    return rows


def seed_candidate(row: dict) -> Candidate:
    return Candidate(row["instruction"], row.get("input", ""), row["output"])


# --- generation prompt and parsing --------------------------------------------------------------


def generation_prompt(shown: list[Candidate]) -> list[dict]:
    blocks = ["Task: " + c.instruction + (f"\nInput: {c.input}" if c.input else "")
              for c in shown]
    return [{"role": "user", "content": _GENERATE.format(examples="\n\n".join(blocks))}]


def parse_generation(text: str) -> Candidate | None:
    """The task in a generation: the line after "Task:" (else the first line), and the line
    after "Input:" when there is one; None when nothing is left."""
    lines = [ln.strip().strip("*").strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    start = next((i for i, ln in enumerate(lines) if re.match(r"^\W*(task|instruction)\b", ln,
                                                               re.IGNORECASE)), 0)
    instruction = _unlabel(lines[start])
    inp = ""
    if start + 1 < len(lines) and re.match(r"^\W*input\s*:", lines[start + 1], re.IGNORECASE):
        inp = _unlabel(lines[start + 1])
        inp = "" if inp.lower().strip(".") in ("none", "n/a", "no input", "-") else inp
    return Candidate(instruction, inp) if instruction else None


def _unlabel(line: str) -> str:
    """A line without its label ("Task 4:", "**Input:**") or list number ("1.")."""
    line = _LABEL.sub("", line).strip().strip("*").strip()
    return re.sub(r"^\d+[.)]\s+", "", line)


# --- the built-in task an instruction asks for --------------------------------------------------


def reference_answer(text: str) -> tuple[str, str] | None:
    """(task name, answer) when ``text`` asks one of the built-in tasks, else None."""
    from lmlab.data.tasks.arith import UNITS, join

    low = text.lower()
    nums = [int(x) for x in _NUM.findall(low)]
    for src, dst, factor, _ in UNITS:
        m = re.search(rf"(\d+)\s+{src}\b.*\b(?:to|in|into)\s+{dst}\b", low)
        if m and len(nums) == 1:
            return "convert", str(int(m.group(1)) * factor)
    if re.search(r"\bsort|ascending|smallest to largest|lowest to highest|increasing order",
                 low) and len(nums) >= 2:
        return "sort", join(sorted(nums))
    if re.search(r"\b(larger|bigger|greater|maximum)\b", low) and len(nums) == 2:
        return "compare", str(max(nums))
    word = re.search(r"['\"]([a-z]+)['\"]", low)
    if word and re.search(r"revers|backward", low):
        return "reverse", word.group(1)[::-1]
    if len(nums) == 2:
        a, b = nums
        if re.search(r"\d\s*\+\s*\d|\bsum of\b|\badd\b|\bplus\b", low):
            return "add", str(a + b)
        if re.search(r"\bsubtract\s+\d+\s+from\b", low):
            return "sub", str(b - a)
        if re.search(r"\d\s*-\s*\d|\bminus\b|\bdifference\b", low):
            return "sub", str(a - b)
    return None


# --- filters ------------------------------------------------------------------------------------


def instruction_reason(c: Candidate, pool: list[list[str]], limits: Limits) -> str | None:
    """Why the instruction is rejected before it is answered (None: it passes); sets
    ``c.rouge``, the highest ROUGE-L against ``pool`` (tokenized instructions)."""
    from lmlab.eval.rouge import max_rouge_l

    words = c.instruction.split()
    if len(words) < limits.min_words:
        return "too_short"
    if len(words) > limits.max_words:
        return "too_long"
    labelled = _LABEL.search(c.instruction) or re.search(r"\b(task|answer|output)\s*:",
                                                          c.instruction, re.IGNORECASE)
    if not c.instruction[0].isalpha() or "\n" in c.instruction or labelled \
            or _ASSISTANT_VOICE.match(c.instruction):
        return "format"
    low = " " + re.sub(r"[^a-z ]", " ", c.instruction.lower()) + " "
    if any(f" {w} " in low for w in BLACKLIST):
        return "blacklist"
    c.rouge = max_rouge_l(c.instruction, pool)
    return "not_novel" if c.rouge >= limits.novelty else None


def output_reason(c: Candidate, limits: Limits) -> str | None:
    """Why the answer is rejected (None: it passes); sets ``c.task`` / ``c.answer`` when the
    instruction is a built-in task, whose strict checker then decides."""
    from lmlab.data.tasks import get_task
    from lmlab.eval.rouge import rouge_l

    out = c.output.strip()
    if c.truncated or len(out.split()) > limits.max_output_words:
        return "too_long"
    if not out or rouge_l(out, c.instruction) >= 0.9:
        return "format"
    ref = reference_answer(c.prompt())
    if ref is not None:
        c.task, c.answer = ref
        if not get_task(c.task).check(out, c.answer):
            return "checker"
    return None


# --- the loop -----------------------------------------------------------------------------------

Propose = Callable[[list[list[dict]], int], list[tuple[str, bool]]]  # chat prompts, round ->
# (generation, cut off by the token budget?)
Answer = Callable[[list[str]], list[tuple[str, bool]]]  # prompts -> (answer, cut off?)
Score = Callable[[list[str], list[str]], list[float | None]]  # prompts, answers -> scores


@dataclass
class Grown:
    kept: list[Candidate]
    records: list[Candidate]  # every generated candidate, kept or not, with its reason
    rounds: int

    def counts(self) -> dict:
        rejected = Counter(c.reason for c in self.records if c.reason)
        return {"generated": len(self.records), "kept": len(self.kept),
                "rejected": {r: rejected.get(r, 0) for r in REASONS},
                "kept_with_checker": sum(c.task is not None for c in self.kept),
                "rounds": self.rounds}


def grow(seeds: list[Candidate], propose: Propose, answer: Answer, *, target: int,
         max_generated: int, batch_size: int = 8, shown: int = 3, limits: Limits = Limits(),
         seed: int = 0, judge: Score | None = None, judge_min: float = 0.0,
         on_round: Callable[[Grown], None] | None = None) -> Grown:
    """Generate, answer and filter in rounds of ``batch_size`` until ``target`` tasks are kept
    or ``max_generated`` were generated."""
    from lmlab.eval.rouge import tokens

    rng = random.Random(f"lmlab.self-instruct:{seed}")
    pool = list(seeds)
    pool_tokens = [tokens(c.instruction) for c in pool]
    out = Grown([], [], 0)
    while len(out.kept) < target and len(out.records) < max_generated:
        n = min(batch_size, max_generated - len(out.records))
        prompts = [generation_prompt(_show(pool, len(seeds), shown, rng)) for _ in range(n)]
        fresh, batch_tokens = [], []
        for text, cut in propose(prompts, out.rounds):
            c = parse_generation(text) or Candidate("", reason="unparsable")
            c.extra["generation"] = text
            c.reason = c.reason or ("too_long" if cut else None)
            c.reason = c.reason or instruction_reason(c, pool_tokens + batch_tokens, limits)
            if c.reason is None:  # novel so far: later ones in this batch are compared to it
                batch_tokens.append(tokens(c.instruction))
                fresh.append(c)
            out.records.append(c)
        _answer_and_check(fresh, answer, limits, judge, judge_min)
        for c in fresh:  # only kept tasks join the pool
            if c.reason is None:
                out.kept.append(c)
                pool.append(c)
                pool_tokens.append(tokens(c.instruction))
        out.rounds += 1
        if on_round:
            on_round(out)
    return out


def _show(pool: list[Candidate], n_seeds: int, k: int, rng: random.Random) -> list[Candidate]:
    """``k`` pool tasks to show: mostly seeds, one generated task when there are some (the
    paper shows 6 seeds and 2 generated)."""
    made = pool[n_seeds:]
    pick = rng.sample(pool[:n_seeds], min(k - bool(made), n_seeds))
    return pick + ([rng.choice(made)] if made else [])


def _answer_and_check(fresh: list[Candidate], answer: Answer, limits: Limits,
                      judge: Score | None, judge_min: float) -> None:
    if not fresh:
        return
    for c, (text, cut) in zip(fresh, answer([c.prompt() for c in fresh])):
        c.output, c.truncated = text.strip(), cut
        c.reason = output_reason(c, limits)
    if judge is None:
        return
    judged = [c for c in fresh if c.reason is None]
    if judged:
        for c, s in zip(judged, judge([c.prompt() for c in judged], [c.output for c in judged])):
            c.extra["judge_score"] = s
            if s is None or s < judge_min:
                c.reason = "judge"
