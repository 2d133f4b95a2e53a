"""Chain-of-thought rows: worked solutions written by the task generators, not by a model.

Every built-in verifiable task can show its work: ``rationale(name, prompt, answer)`` reads the
task's parameters back from the prompt (the question frames are the task's own, ``PHRASES``)
and writes the solution step by step, ending in a final answer line the strict checker accepts:

- add / sub: column by column from the ones, with the carries / borrows;
- compare: the digit counts, then digit by digit from the left until two differ;
- convert: one unit in the other, then the multiplication split by place value;
- sort: repeated selection (the smallest of what is left, until one is left);
- reverse: the letters, then the letters from last to first;
- json: the column arithmetic, then the JSON object alone on the last line.

The final line is ``Answer: <answer>`` (json: ``{"answer": N}``). A CoT prompt is the task's
question with its answer-only instruction swapped for a show-your-work one (``cot_prompt``):
train instructions for train prompts, held-out ones for held-out prompts, so the held-out
phrasing split keeps its meaning. Only the instruction changes, so answer-only and CoT rows
cover exactly the same questions and the same prompts stay held out.

Scoring (``cot_check``): the task's strict checker applied to the reply's FINAL LINE only. For
every number task and reverse this is exactly ``Task.check`` (they read the final line
already); for json it means the last line must be the JSON object and nothing else. Numbers the
working mentions are never credited: "347 + 589 = 936 ... Answer: 937" is wrong.

Data sources: ``task:add,sort?cot=1`` (``split_source``) asks ``load_rows`` for rationale rows.
"""

from __future__ import annotations

import hashlib
import re

from lmlab.data.tasks.arith import PHRASES, UNITS, join
from lmlab.data.tasks.extract import clean
from lmlab.data.tasks.phrasing import Phrasings
from lmlab.data.tasks.text import JSON_PHRASES, REVERSE_PHRASES
from lmlab.errors import UserError

ANSWER_CUE = "Answer: "
COT_TASKS = ("add", "sub", "compare", "convert", "sort", "reverse", "json")
OPTIONS = {"cot": ("0", "1", "true", "false")}  # the ?key=value options of a task: source

_NUMBER_TRAIN = ("Show your working step by step, then give the answer on the last line.",
                 "Work it out step by step and end with a line 'Answer: <number>'.")
_NUMBER_EVAL = ("Think it through one step at a time; state the answer on the final line.",
                "Explain each step, then finish with the answer on its own line.")
_COT_INSTRUCTIONS = {  # task family -> (train, held-out) show-your-work instructions
    "number": (_NUMBER_TRAIN, _NUMBER_EVAL),
    "sort": (("Show your working step by step, then give the sorted list on the last line.",
              "Sort it step by step and end with a line 'Answer: <list>'."),
             ("Think it through one step at a time; state the sorted list on the final line.",)),
    "reverse": (("Spell it out step by step, then give the reversed word on the last line.",),
                ("Go letter by letter, then finish with the reversed word on its own line.",)),
    "json": (('Show your working, then give only {"answer": <number>} on the last line.',),
             ('Explain each step; the final line must be the JSON {"answer": N} alone.',)),
}
_FAMILY = {"add": "number", "sub": "number", "compare": "number", "convert": "number",
           "sort": "sort", "reverse": "reverse", "json": "json"}
_PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


def phrases(name: str) -> Phrasings:
    if name not in COT_TASKS:
        raise UserError(f"task {name!r} has no worked solutions (chain of thought); tasks with "
                        f"them: {', '.join(COT_TASKS)}")
    return {**PHRASES, "reverse": REVERSE_PHRASES, "json": JSON_PHRASES}[name]


# --- the prompt: question + instruction ---------------------------------------------------------


def split_prompt(name: str, prompt: str) -> tuple[str, bool]:
    """(the question without its answer-format instruction, whether that instruction was a
    held-out one); a show-your-work instruction counts too. Raises UserError for a prompt the
    task's phrasings did not write."""
    ph = phrases(name)
    train_cot, eval_cot = _COT_INSTRUCTIONS[_FAMILY[name]]
    for held, instructions in ((False, ph.train_instructions + train_cot),
                               (True, ph.eval_instructions + eval_cot)):
        for ins in instructions:
            if prompt.endswith(" " + ins):
                return prompt[:-len(ins) - 1], held
    raise UserError(f"not a {name} prompt (no known answer instruction at its end): "
                    f"{prompt!r:.80}")


def _pick(options: tuple[str, ...], text: str) -> str:
    """One of ``options`` chosen by a stable hash of ``text`` (no RNG state to thread)."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def cot_prompt(name: str, prompt: str) -> str:
    """``prompt`` with its answer-only instruction replaced by a show-your-work one (a held-out
    instruction stays held out)."""
    question, held = split_prompt(name, prompt)
    return question + " " + _pick(_COT_INSTRUCTIONS[_FAMILY[name]][int(held)], question)


def fields(name: str, prompt: str) -> dict[str, str]:
    """The fields the task's question frame was filled with, e.g. {"a": "347", "b": "589"}."""
    question, _ = split_prompt(name, prompt)
    ph = phrases(name)
    for frame in ph.train_frames + ph.eval_frames:
        m = _frame_regex(frame).match(question)
        if m:
            return m.groupdict()
    raise UserError(f"not a {name} question: {question!r:.80}")


def _frame_regex(frame: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", frame)
    body = "".join(f"(?P<{p[1:-1]}>.+?)" if re.fullmatch(r"\{\w+\}", p) else re.escape(p)
                   for p in parts)
    return re.compile("^" + body + "$")


# --- worked solutions ---------------------------------------------------------------------------


def _digits(n: int) -> list[int]:
    """Digits from the ones upwards: 347 -> [7, 4, 3]."""
    return [int(d) for d in reversed(str(n))]


def add_steps(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    lines, carry = [], 0
    for i in range(max(len(da), len(db))):
        x, y = (da[i] if i < len(da) else 0), (db[i] if i < len(db) else 0)
        total = x + y + carry
        expr = f"{x} + {y}" + (f" + {carry}" if carry else "")
        note = f", write {total % 10} carry 1" if total >= 10 else ""
        lines.append(f"{_PLACES[i]}: {expr} = {total}{note}")
        carry = total // 10
    if carry:
        lines.append(f"the last carry 1 becomes the {_PLACES[len(lines)]} digit")
    return lines + [f"{a} + {b} = {a + b}"]


def sub_steps(a: int, b: int) -> list[str]:
    da, db = _digits(a), _digits(b)
    lines, borrow = [], 0
    for i in range(len(da)):
        x, y = da[i], (db[i] if i < len(db) else 0)
        expr = f"{x}" + (" - 1 (borrowed)" if borrow else "") + f" - {y}"
        value = x - borrow - y
        borrow = int(value < 0)
        expr += " + 10 (borrow)" if borrow else ""
        lines.append(f"{_PLACES[i]}: {expr} = {value + 10 * borrow}")
    return lines + [f"{a} - {b} = {a - b}"]


def compare_steps(x: int, y: int) -> list[str]:
    big = max(x, y)
    sx, sy = str(x), str(y)
    if len(sx) != len(sy):
        return [f"{x} has {len(sx)} digits and {y} has {len(sy)} digits, so {big} is larger"]
    lines = [f"both have {len(sx)} digits; compare from the left"]
    for i, (p, q) in enumerate(zip(sx, sy)):
        place = _PLACES[len(sx) - 1 - i]
        if p == q:
            lines.append(f"{place}: both {p}")
        else:
            lines.append(f"{place}: {p} vs {q}, so {big} is larger")
            break
    return lines


def convert_steps(n: int, src: str, dst: str) -> list[str]:
    factor = next(f for s, d, f, _ in UNITS if (s, d) == (src, dst))
    lines = [f"1 {src[:-1]} = {factor} {dst}, so multiply {n} by {factor}"]
    zeros = len(str(factor)) - 1
    if factor == 10 ** zeros:
        lines.append(f"{n} x {factor}: append {zeros} zero{'s' if zeros > 1 else ''} "
                     f"= {n * factor}")
        return lines
    parts = [int(d) * 10 ** i for i, d in enumerate(_digits(n)) if d][::-1]
    if len(parts) > 1:
        lines.append(f"{n} x {factor} = " + " + ".join(f"{p} x {factor}" for p in parts)
                     + " = " + " + ".join(str(p * factor) for p in parts) + f" = {n * factor}")
    else:
        lines.append(f"{n} x {factor} = {n * factor}")
    return lines


def sort_steps(values: list[int]) -> list[str]:
    left, lines = list(values), []
    while len(left) > 1:
        m = min(left)
        lines.append(f"smallest of {join(left)}: {m}")
        left.remove(m)
    lines.append(f"last one left: {left[0]}")
    return lines + [f"in order: {join(sorted(values))}"]


def reverse_steps(word: str) -> list[str]:
    return [f"letters: {' '.join(word)}", f"from last to first: {' '.join(reversed(word))}"]


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def steps(name: str, prompt: str) -> list[str]:
    """The working (without the final answer line) for a ``name`` prompt."""
    f = fields(name, prompt)
    if name in ("add", "sub"):
        a, b = int(f["a"]), int(f["b"])
        return add_steps(a, b) if name == "add" else sub_steps(a, b)
    if name == "compare":
        return compare_steps(int(f["x"]), int(f["y"]))
    if name == "convert":
        return convert_steps(int(f["n"]), f["src"], f["dst"])
    if name == "sort":
        return sort_steps(_ints(f["items"]))
    if name == "reverse":
        return reverse_steps(f["w"])
    a, b = int(f["a"]), int(f["b"])  # json
    return add_steps(a, b) if f["op"] == "+" else sub_steps(a, b)


def answer_line(name: str, answer: str) -> str:
    """The final line that states ``answer`` (json: the object itself)."""
    return answer if name == "json" else ANSWER_CUE + answer


def rationale(name: str, prompt: str, answer: str) -> str:
    """The worked solution: the steps, then the final answer line."""
    return "\n".join(steps(name, prompt) + [answer_line(name, answer)])


def cot_check(task, completion: str, answer: str) -> bool:
    """The task's strict checker on the reply's final line only (see the module doc)."""
    lines = [ln for ln in clean(completion).splitlines() if ln.strip()]
    return bool(lines) and task.check(lines[-1], answer)


# --- rows ---------------------------------------------------------------------------------------


def cot_example(name: str, ex: dict) -> dict:
    """A task example ``{prompt, answer}`` as ``{prompt: CoT prompt, answer, rationale}``."""
    return {**ex, "prompt": cot_prompt(name, ex["prompt"]),
            "rationale": rationale(name, ex["prompt"], ex["answer"])}


def cot_rows(names, kind: str, split: str, n: int | None = None, seed: int = 0) -> list[dict]:
    """``task_rows`` with worked solutions: the same questions as the answer-only rows, the
    instruction asks for the working and the reply is the rationale. kinds: chat (the reply is
    the rationale), task (``answer`` stays the bare answer, ``rationale`` added), text, and
    preference (chosen: the rationale; rejected: the same working ending in a wrong answer)."""
    from lmlab.data.tasks.core import get_task, task_rows

    out = []
    for row in task_rows(names, "preference" if kind == "preference" else "task", split, n,
                         seed):
        name = row["task"]
        answer = row.get("answer") or row["chosen"]
        ex = cot_example(name, {"prompt": row["prompt"], "answer": answer})
        if kind == "task":
            out.append({**ex, "task": name, "cot": True})
        elif kind == "chat":
            out.append({"messages": [{"role": "user", "content": ex["prompt"]},
                                     {"role": "assistant", "content": ex["rationale"]}],
                        "task": name})
        elif kind == "preference":
            work = "\n".join(steps(name, row["prompt"]))
            wrong = work + "\n" + answer_line(name, row["rejected"])
            assert not cot_check(get_task(name), wrong, answer)  # wrong_answer's promise
            out.append({"prompt": ex["prompt"], "chosen": ex["rationale"], "rejected": wrong,
                        "task": name})
        else:
            out.append({"text": ex["prompt"] + "\n" + ex["rationale"]})
    return out


def split_source(source: str) -> tuple[list[str], dict[str, bool]]:
    """``"task:add,sort?cot=1"`` -> (["add", "sort"], {"cot": True}). Options follow a ``?``
    as ``key=value`` pairs joined by ``&``; the only one is ``cot`` (0/1/true/false)."""
    body = source.split(":", 1)[1] if source.startswith("task:") else source
    body, _, query = body.partition("?")
    names = [n.strip() for n in body.split(",") if n.strip()]
    options: dict[str, bool] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key not in OPTIONS:
            raise UserError(f"{source}: unknown task option {key!r}; known: "
                            f"{', '.join(OPTIONS)} (e.g. task:add?cot=1)")
        if not eq or value.lower() not in OPTIONS[key]:
            raise UserError(f"{source}: option {key} must be one of "
                            f"{', '.join(OPTIONS[key])}, got {value!r}")
        options[key] = value.lower() in ("1", "true")
    return names, options
