"""`lmlab preferences` on the tiny model: every labeller, the output schema, ties, resume, bad
input."""

import json

import pytest

from lmlab.cli import main

BASE = ["model=tiny:llama", "limit=4", "n=3", "max_new_tokens=6", "batch_size=2",
        "critique_max_new_tokens=4"]


def _run(tmp_path, *extra, name="run"):
    out = tmp_path / name
    return main(["preferences", *BASE, f"output_dir={out}", *extra]), out


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _check_schema(out, labeller, scored=True):
    from lmlab.data import load_rows

    pairs, recs, s = _jsonl(out / "pairs.jsonl"), _jsonl(out / "scored.jsonl"), _summary(out)
    assert s["labeller"] == labeller and s["prompts"] == 4 and len(recs) == 4
    assert s["pairs"] == len(pairs) == sum(len(r["pairs"]) for r in recs)
    assert s["replies"] == sum(len(r["samples"]) for r in recs) == 12
    for p in pairs:
        assert {"prompt", "chosen", "rejected", "labeller", "index"} <= set(p)
        assert p["chosen"] != p["rejected"]
        if scored:
            assert p["chosen_score"] > p["rejected_score"]
    if pairs:  # what lmlab reward / dpo read
        assert len(load_rows(str(out / "pairs.jsonl"), "preference")) == len(pairs)
    return pairs, recs, s


def test_task_labeller_counts_ties(tmp_path):
    rc, out = _run(tmp_path, "data=task:add", "labeller=task")
    assert rc == 0
    pairs, recs, s = _check_schema(out, "task")
    # a random model never answers correctly: every prompt is a tie, nothing is paired
    assert s["pairs"] == 0 and s["ties"] == 4 and s["mean_reply_score"] == 0.0
    assert recs[0]["task"] == "add" and "answer" in recs[0]


def test_rule_labeller_makes_pairs(tmp_path):
    rc, out = _run(tmp_path, "data=task:add", "labeller=rule", "rule=concise",
                   "max_new_tokens=40", "pairing=all")
    assert rc == 0
    pairs, recs, s = _check_schema(out, "rule")
    assert s["pairs"] > 0
    assert s["pairs"] + s["ties"] + s["identical"] == 4 * 3  # n=3: 3 candidate pairs a prompt


@pytest.mark.parametrize("mode", ["pointwise", "pairwise"])
def test_judge_labeller(tmp_path, mode):
    rc, out = _run(tmp_path, "labeller=judge", f"judge_mode={mode}", "judge=tiny:llama4")
    assert rc == 0
    pairs, recs, s = _check_schema(out, "judge")
    if mode == "pointwise":
        assert s["pairs"] == 4 and all(1 <= x["score"] <= 5 for x in recs[0]["samples"])
        assert 0 < s["judge_label_mass"] <= 1
    else:  # 3 comparisons per prompt, each in both orders
        assert 0 <= s["judge_position_consistency"] <= 1
        assert s["pairs"] + s["ties"] == 4


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory):
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.heads import RewardModel, save_reward_model

    folder = tmp_path_factory.mktemp("rm")
    tok = load_tokenizer("tiny:llama")
    save_reward_model(RewardModel(load_model("tiny:llama"), tokenizer=tok), folder)
    return folder


def test_reward_labeller(tmp_path, rm_folder):
    rc, out = _run(tmp_path, "labeller=reward", f"reward_model={rm_folder}")
    assert rc == 0
    pairs, recs, s = _check_schema(out, "reward")
    assert s["pairs"] == 4  # continuous scores never tie
    from lmlab.models.heads import load_reward_model

    rm = load_reward_model(str(rm_folder))
    p = pairs[0]
    prompt = [{"role": "user", "content": p["prompt"]}]
    assert rm.score([prompt], [p["chosen"]])[0] == pytest.approx(p["chosen_score"], abs=1e-4)


def test_constitution(tmp_path):
    principles = tmp_path / "principles.txt"
    principles.write_text("# one rule\nAnswers should be short.\n")
    rc, out = _run(tmp_path, "labeller=constitution", "n=1", f"principles={principles}",
                   "max_new_tokens=6")
    assert rc == 0
    pairs = _jsonl(out / "pairs.jsonl")
    recs = _jsonl(out / "scored.jsonl")
    s = _summary(out)
    assert s["pairs"] + s["unchanged"] == 4
    assert all(x["principle"] == "Answers should be short." for r in recs for x in r["samples"])
    for p in pairs:
        assert {"prompt", "chosen", "rejected", "critique", "principle"} <= set(p)


def test_resume_continues_and_equals_uninterrupted(tmp_path):
    args = ["labeller=judge"]
    assert _run(tmp_path, *args, name="whole")[0] == 0
    rc, out = _run(tmp_path, *args, name="cut")
    assert rc == 0
    # the run "died" after its first chunk, halfway through writing the second
    lines = (out / "scored.jsonl").read_text().splitlines(keepends=True)
    (out / "scored.jsonl").write_text("".join(lines[:2]) + lines[2][:40])
    (out / "pairs.jsonl").unlink()
    assert main(["preferences", *BASE, f"output_dir={out}", *args]) == 1  # no resume: refused
    rc, _ = _run(tmp_path, *args, "resume=auto", name="cut")
    assert rc == 0
    assert _summary(out)["resumed_prompts"] == 2
    assert (out / "pairs.jsonl").read_text() == (tmp_path / "whole" / "pairs.jsonl").read_text()
    assert (out / "scored.jsonl").read_text() == (tmp_path / "whole" / "scored.jsonl").read_text()


@pytest.mark.parametrize("args,code,match", [
    (["labeller=reward"], 2, "reward_model: required"),
    (["labeller=judge", "n=1"], 2, "needs n >= 2"),
    (["labeller=task", "judge=tiny:llama"], 2, "judge: only used"),
    (["temperature=0"], 2, "temperature"),
    (["labeller=task", "data=PROMPTS"], 1, "labeller=task needs task prompts"),
    (["labeller=judge", "judge=tiny:nope"], 1, "unknown tiny preset"),
])
def test_bad_config_fails_before_writing(tmp_path, capsys, args, code, match):
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\n")
    args = [a.replace("PROMPTS", str(prompts)) for a in args]
    rc, out = _run(tmp_path, *args)
    assert rc == code
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_prompt_longer_than_context_fails_before_writing(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("short\n" + "word " * 2100 + "\n")
    rc, out = _run(tmp_path, f"data={prompts}", "labeller=rule")
    assert rc == 1 and "prompts[1]" in capsys.readouterr().err and not out.exists()


def test_reward_and_policy_folders_are_not_swapped(tmp_path, capsys, rm_folder):
    from lmlab.models import load_model, load_tokenizer

    tok = load_tokenizer("tiny:llama")
    policy = tmp_path / "policy"
    load_model("tiny:llama").save_pretrained(policy)
    tok.save_pretrained(policy)
    rc, _ = _run(tmp_path, "labeller=reward", f"reward_model={policy}")
    assert rc == 1 and "is not a reward model" in capsys.readouterr().err
    rc, _ = _run(tmp_path, f"model={rm_folder}", "labeller=rule", name="r2")
    assert rc == 1 and "not a causal LM policy" in capsys.readouterr().err


@pytest.mark.slow
def test_real_model_task_pairs(tmp_path):
    """The default model on `compare` (base accuracy ~23%): sampled replies that the checker
    accepts are paired over ones it rejects."""
    from lmlab.data.tasks import get_task

    rc = main(["preferences", "model=smollm2-135m-instruct", "data=task:compare", "limit=16",
               "n=4", "max_new_tokens=12", "labeller=task", f"output_dir={tmp_path / 'r'}"])
    assert rc == 0
    pairs = _jsonl(tmp_path / "r" / "pairs.jsonl")
    s = _summary(tmp_path / "r")
    assert s["pairs"] == len(pairs) > 0 and s["pairs"] + s["ties"] == 16
    task = get_task("compare")
    for p in pairs:
        assert task.check(p["chosen"], p["answer"]) and not task.check(p["rejected"], p["answer"])
