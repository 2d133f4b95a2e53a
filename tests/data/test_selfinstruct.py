"""Self-instruct filters on hand-made rows, the built-in task reader, and the loop with a
stand-in model."""

from __future__ import annotations

import json

import pytest

from lmlab.data.selfinstruct import (
    REASONS,
    SEED_TASKS,
    Candidate,
    Limits,
    grow,
    instruction_reason,
    output_reason,
    parse_generation,
    read_seeds,
    reference_answer,
    seed_candidate,
)
from lmlab.errors import DataError
from lmlab.eval.rouge import tokens

POOL = [tokens(s["instruction"]) for s in SEED_TASKS]


def _why(instruction, output="A fine answer.", *, cut=False, limits=None):
    limits = limits or Limits()
    c = Candidate(instruction, output=output, truncated=cut)
    return instruction_reason(c, POOL, limits) or output_reason(c, limits)


def test_filters_on_hand_made_rows():
    assert _why("Write a short poem about the sea.") is None  # novel: kept
    assert _why("Name the capital city of France.") == "not_novel"  # 5 of 6 words as a seed
    assert _why("Name the capital city of Italy.") == "not_novel"  # a seed itself
    assert _why("Explain " + "why " * 60 + "it rains.") == "too_long"
    assert _why("Hi.") == "too_short"
    assert _why("Write a short poem about the sea.", "word " * 101) == "too_long"
    assert _why("Write a short poem about the sea.", "Waves", cut=True) == "too_long"
    assert _why("Write a short poem about the sea.", "") == "format"
    assert _why("Write a short poem about the sea.", "Write a short poem about the sea.") == \
        "format"  # the answer repeats the instruction
    assert _why("123 write something clever now") == "format"
    assert _why("List three fruits. Answer: apple") == "format"
    assert _why("I'm ready to help. What can I do for you today?") == "format"
    assert _why("Here's a little custom: write it down") == "format"
    assert _why("Identify the verb in the sentence.") is None  # "I" only as a whole word
    assert _why("Draw a picture of a tree for me.") == "blacklist"
    assert _why("Describe the image of a sunset.") == "blacklist"
    assert _why("Summarize the attached file in one line.") == "blacklist"


def test_novelty_threshold_is_the_key():
    c = Candidate("Name the capital city of France.")
    assert instruction_reason(c, POOL, Limits(novelty=0.9)) is None
    assert c.rouge == pytest.approx(5 / 6)
    assert instruction_reason(Candidate(c.instruction), POOL, Limits(novelty=0.8)) == \
        "not_novel"


def test_checker_where_the_instruction_is_a_built_in_task():
    assert _why("What is 125 + 250 in total?", "375") is None
    c = Candidate("What is 125 + 250 in total?", output="The answer is 376.")
    assert output_reason(c, Limits()) == "checker" and (c.task, c.answer) == ("add", "375")
    # mentions the right number but does not state it as the answer
    assert _why("What is 125 + 250 in total?", "375 or 376") == "checker"
    assert _why("Sort 9, 4, 7 in ascending order please.", "4, 7, 9") is None
    assert _why("Sort 9, 4, 7 in ascending order please.", "4, 9, 7") == "checker"
    assert _why("Spell the word 'moon' backwards please.", "noom") is None
    assert _why("Spell the word 'moon' backwards please.", "mono") == "checker"


def test_reference_answer_reads_the_built_in_tasks():
    assert reference_answer("What is 12 + 30?") == ("add", "42")
    assert reference_answer("Subtract 5 from 12.") == ("sub", "7")
    assert reference_answer("What is 50 - 8?") == ("sub", "42")
    assert reference_answer("Which is bigger, 3 or 9?") == ("compare", "9")
    assert reference_answer("Convert 5 hours to minutes.") == ("convert", "300")
    assert reference_answer("Put 5, 2, 9 from lowest to highest.") == ("sort", "2, 5, 9")
    assert reference_answer('Reverse "dog".') == ("reverse", "god")
    assert reference_answer("Name a fruit.") is None
    assert reference_answer("What is 3 + 4 + 5?") is None  # not a two-number sum: no checker


def test_parse_generation():
    c = parse_generation("Sure!\nTask: Name three colors.\nInput: none\nAnswer: red")
    assert (c.instruction, c.input) == ("Name three colors.", "")
    c = parse_generation("**Task 4:** Translate the word.\n**Input:** hello")
    assert (c.instruction, c.input) == ("Translate the word.", "hello")
    assert parse_generation("1. Write a haiku about snow.").instruction == \
        "Write a haiku about snow."
    assert parse_generation("   \n") is None


def test_read_seeds(tmp_path):
    assert len(read_seeds("")) == len(SEED_TASKS) >= 5
    f = tmp_path / "seeds.jsonl"
    f.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!"}) + "\n\n"
                 + json.dumps({"instruction": "Echo.", "input": "x", "output": "x"}) + "\n")
    assert read_seeds(str(f)) == [{"instruction": "Say hi.", "output": "Hi!"},
                                  {"instruction": "Echo.", "input": "x", "output": "x"}]
    f.write_text(json.dumps({"instruction": "Say hi."}) + "\n")
    with pytest.raises(DataError, match="output"):
        read_seeds(str(f))


def test_grow_with_a_stand_in_model():
    generations = iter([
        "Task: Write a short poem about the sea.",          # kept
        "Task: Write a short poem about the sea today.",    # near-duplicate of the one above
        "Task: What is 125 + 250 in total?",                 # checker: wrong answer below
        "Task: Draw a map of your town.",                    # blacklist
        "Task: List three animals that live in water.",      # kept
        "",                                                  # unparsable
        "Task: Describe a rainy day in two sentences.",     # cut off: too_long
    ])
    cuts = {"Task: Describe a rainy day in two sentences."}

    def propose(prompts, round_):
        out = []
        for p in prompts:
            assert p[0]["content"].count("Task: ") == 3  # three pool tasks shown
            text = next(generations, "")
            out.append((text, text in cuts))
        return out

    answers = {"What is 125 + 250 in total?": "376"}

    def answer(prompts):
        return [(answers.get(p, "A fine answer."), False) for p in prompts]

    seeds = [seed_candidate(s) for s in SEED_TASKS]
    g = grow(seeds, propose, answer, target=10, max_generated=7, batch_size=4, shown=3)
    assert [c.instruction for c in g.kept] == ["Write a short poem about the sea.",
                                               "List three animals that live in water."]
    counts = g.counts()
    assert counts["generated"] == 7 and counts["kept"] == 2 and counts["rounds"] == 2
    assert counts["rejected"] == {**dict.fromkeys(REASONS, 0), "not_novel": 1, "checker": 1,
                                  "blacklist": 1, "unparsable": 1, "too_long": 1}
    assert counts["generated"] == counts["kept"] + sum(counts["rejected"].values())
    assert g.kept[0].row("self-instruct") == {"prompt": "Write a short poem about the sea.",
                                               "completion": "A fine answer.",
                                               "source": "self-instruct"}


def test_grow_stops_at_the_target_and_the_judge_filters():
    n = iter(range(100))

    def propose(prompts, round_):
        return [(f"Task: Invent a name for a pet number {w}", False) for w in
                ["one", "two", "three", "four"][:len(prompts)] for _ in [next(n)]]

    seen = []

    def judge(prompts, outputs):
        seen.extend(prompts)
        return [5.0 if "one" in p else 1.0 for p in prompts]

    seeds = [seed_candidate(s) for s in SEED_TASKS]
    g = grow(seeds, propose, lambda ps: [("Rex", False)] * len(ps), target=1, max_generated=40,
             batch_size=4, judge=judge, judge_min=3.0, limits=Limits(novelty=0.99))
    assert len(g.kept) == 1 and g.rounds == 1
    assert g.counts()["rejected"]["judge"] == 3 and len(seen) == 4
