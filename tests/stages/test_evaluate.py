"""`lmlab evaluate` on tiny models: files and schema, reward and judge pairwise rows, the cache,
determinism, and config errors."""

import json
import pathlib

import pytest

from lmlab.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory):
    from lmlab.models import load_model, load_tokenizer
    from lmlab.models.heads import RewardModel, save_reward_model

    folder = tmp_path_factory.mktemp("rm") / "final"
    save_reward_model(RewardModel(load_model("tiny:llama"), tokenizer=load_tokenizer("tiny:llama")),
                      folder)
    return folder


def _evaluate(tmp_path, *extra, name="run"):
    out = tmp_path / name
    args = ["evaluate", "models=tiny:llama,tiny:llama4", "labels=a,b", "sets=ppl:tasks,tasks,safety",
            "tasks=add", "limit=2", "max_new_tokens=4", "task_max_new_tokens=4",
            f"cache_dir={tmp_path / 'cache'}", f"output_dir={out}", *extra]
    return main(args), out


def _read(path):
    return json.loads(path.read_text())


def test_writes_eval_json_per_model_and_comparison(tmp_path, reward_folder):
    rc, out = _evaluate(tmp_path, f"reward_model={reward_folder}", "judge=tiny:llama",
                        "bootstrap=50")
    assert rc == 0
    for label in ("a", "b"):
        e = _read(out / "models" / label / "eval.json")
        assert e["schema"] == "lmlab.eval/1" and e["label"] == label
        assert set(e["sets"]) == {"ppl:tasks", "tasks", "safety"}
        for key in ("ppl:tasks/perplexity", "ppl:tasks/bits_per_byte", "tasks/accuracy",
                    "tasks/add/accuracy", "safety/refusal_rate", "safety/over_refusal_rate",
                    "tasks/reward_mean", "safety/reward_mean", "safety/judge_score"):
            assert key in e["metrics"], key
        # limit=2 prompts per task and split: in-template, held-out template, out-of-range
        assert e["sets"]["tasks"]["n"] == 6 and e["sets"]["safety"]["n"] == 4
        for key in ("tasks/heldout_accuracy", "tasks/range_accuracy",
                    "tasks/add/heldout_accuracy", "tasks/add/range_accuracy"):
            assert key in e["metrics"], key
            iv = e["intervals"][key]
            assert iv["n"] == 2 and iv["ci95"][0] <= e["metrics"][key] <= iv["ci95"][1]
        assert e["contamination"] == []  # tiny presets are no lmlab runs: nothing to check
        assert e["metrics"]["ppl:tasks/perplexity"] > 1
        assert not e["sets"]["tasks"]["cached"]
        samples = [json.loads(x) for x in (out / "models" / label / "samples.jsonl").open()]
        assert {s["set"] for s in samples} == {"tasks", "safety"}
        assert all("reward" in s for s in samples)
    comp = _read(out / "comparison.json")
    assert [m["label"] for m in comp["models"]] == ["a", "b"]
    assert comp["table"]["a"]["tasks/accuracy"] == _read(out / "models/a/eval.json")["metrics"][
        "tasks/accuracy"]
    kinds = {(p["set"], p["judge"]) for p in comp["pairwise"]}
    assert kinds == {("tasks", "reward"), ("safety", "reward"), ("safety", "tiny:llama")}
    for p in comp["pairwise"]:
        assert p["a"] == "a" and p["b"] == "b"
        assert p["wins"] + p["ties"] + p["losses"] == p["n"]
        assert p["ci95"][0] <= p["win_rate"] <= p["ci95"][1]
    judge_row = next(p for p in comp["pairwise"] if p["judge"] == "tiny:llama")
    assert "agreement_with_reward" in judge_row and "position_consistency" in judge_row
    md = (out / "comparison.md").read_text()
    assert "| metric | a | b |" in md and "| tasks/accuracy |" in md and "a vs b" in md
    assert "| tasks/heldout_accuracy |" in md and "| tasks/range_accuracy |" in md
    assert "n=2 |" in md  # accuracies carry their interval and n
    summary = _read(out / "summary.json")
    assert summary["eval_json"] == {"a": "models/a/eval.json", "b": "models/b/eval.json"}

    # same command again: every result from the cache, same numbers, same folder
    rc, again = _evaluate(tmp_path, f"reward_model={reward_folder}", "judge=tiny:llama",
                          "bootstrap=50")
    assert rc == 0 and again == out
    e2 = _read(out / "models/a/eval.json")
    assert all(s["cached"] for s in e2["sets"].values())
    assert _read(out / "comparison.json") == comp
    assert _read(out / "summary.json")["seconds"] < summary["seconds"]


def test_deterministic_without_the_cache(tmp_path):
    def once(name, seed):
        rc, out = _evaluate(tmp_path, "cache=false", "sets=safety", "models=tiny:llama",
                            "labels=a", "temperature=1.0", f"seed={seed}", name=name)
        assert rc == 0
        return (out / "models/a/samples.jsonl").read_text()

    first = once("r1", 0)
    assert once("r2", 0) == first  # sampled replies repeat for a fixed seed
    assert once("r3", 1) != first  # and do depend on it
    assert not (tmp_path / "cache").exists()


def test_cache_key_holds_only_what_changes_a_set(tmp_path):
    text = tmp_path / "held.txt"
    text.write_text("one two three four five six seven eight nine ten " * 4)

    def cached(*extra):
        rc, out = _evaluate(tmp_path, f"sets=ppl:{text},safety", "models=tiny:llama",
                            "labels=a", "limit=1", *extra)
        assert rc == 0
        return {k: v["cached"] for k, v in _read(out / "models/a/eval.json")["sets"].items()}

    assert cached() == {f"ppl:{text}": False, "safety": False}
    assert cached("max_new_tokens=3") == {f"ppl:{text}": True, "safety": False}
    text.write_text("a different held-out text " * 4)
    assert cached("max_new_tokens=3") == {f"ppl:{text}": False, "safety": True}


def test_reference_file_set(tmp_path, capsys):
    good = tmp_path / "refs.jsonl"
    good.write_text('{"prompt": "Say hi.", "reference": "Hi!"}\n'
                    '{"prompt": "Name a colour.", "references": ["Red.", "Blue."]}\n')
    rc, out = _evaluate(tmp_path, f"sets=ref:{good}", "models=tiny:llama", "labels=a")
    assert rc == 0
    e = _read(out / "models/a/eval.json")
    assert e["sets"][f"ref:{good}"]["kind"] == "reference" and e["sets"][f"ref:{good}"]["n"] == 2
    assert {f"ref:{good}/rougeL", f"ref:{good}/bleu", f"ref:{good}/bertscore_f1"} <= set(
        e["metrics"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok", "reference": "x"}\n{"prompt": "no reference"}\n')
    rc, out = _evaluate(tmp_path, f"sets=ref:{bad}", "models=tiny:llama", "labels=a",
                        name="bad")
    assert rc == 1 and not out.exists()
    assert f"{bad}:2: field 'reference'" in capsys.readouterr().err


def test_config_errors_before_any_work(tmp_path, capsys):
    rc, out = _evaluate(tmp_path, "sets=tasks,humaneval,nope", "labels=x")
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "allow_code_execution=true" in err and "unknown eval set 'nope'" in err
    assert "labels: 1 labels for 2 models" in err
    rc, out = _evaluate(tmp_path, "models=tiny:nosuch", "labels=x")
    assert rc != 0 and not out.exists()


def test_shipped_configs_name_known_sets():
    from lmlab.config import load_config
    from lmlab.stages.evaluate import Config

    files = sorted((ROOT / "configs" / "evaluate").glob("*.yaml"))
    assert files
    for f in files:
        cfg = load_config(Config, f, stage="evaluate")
        assert cfg.sets


def test_decode_keys_reach_the_decoder_and_the_cache_key(monkeypatch):
    """pack_weights (default true) and decode_weights become ``pack`` for every reply the
    generating sets decode, and part of their cache key (not of perplexity sets')."""
    import dataclasses

    from lmlab.eval import sets
    from lmlab.stages.evaluate import Config, relevant_settings

    assert Config().settings().pack() == "fp32"
    assert Config(pack_weights=False).settings().pack() is False
    assert Config(decode_weights="int8").settings().pack() == "int8"
    assert Config(pack_weights=False, decode_weights="bf16").validate() == [
        "decode_weights: rounded weights need pack_weights=true"]
    s = dataclasses.asdict(Config(decode_weights="bf16").settings())
    assert relevant_settings("chatterbot", s)["decode_weights"] == "bf16"
    assert relevant_settings("tasks", s)["pack_weights"] is True
    assert "decode_weights" not in relevant_settings("ppl:shakespeare", s)
    seen = []
    monkeypatch.setattr("lmlab.infer.decode.generate",
                        lambda *a, **kw: seen.append(kw.get("pack")) or [])
    sets.complete(None, None, [], Config(decode_weights="int8").settings(), 4)
    assert seen == ["int8"]
