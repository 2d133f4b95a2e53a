"""`lmlab bench generate` on the tiny model: one row per (strategy, batch size), exact token
counts (EOS ignored), speed-ups computed against greedy, tables and files written."""

import json

import pytest

from lmlab.cli import main
from lmlab.stages.bench import add_speedups, table


def test_bench_generate_writes_a_row_per_strategy_and_batch(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bench", "generate", "model=tiny:llama", "data=task:add", "max_new_tokens=4",
               "repeats=1", "batch_sizes=[1,2]", "strategies=[greedy,sample,beam,speculative]",
               "num_beams=2", f"output_dir={out}"])
    assert rc == 0
    bench = json.loads((out / "bench.json").read_text())
    rows = bench["rows"]
    assert [(r["strategy"], r["batch_size"]) for r in rows] == [
        (s, b) for b in (1, 2) for s in ("greedy", "sample", "beam", "speculative")]
    for r in rows:  # EOS is ignored: every prompt yields exactly max_new_tokens
        assert r["new_tokens"] == 4 * r["batch_size"]
        assert r["tokens_per_s"] == pytest.approx(r["new_tokens"] / r["seconds"], rel=1e-2)
        assert (r["ttft_ms"] is not None) == (r["strategy"] in ("greedy", "sample"))
    spec = [r for r in rows if r["strategy"] == "speculative"]
    assert all("acceptance_rate" in r and "speedup_vs_greedy" in r for r in spec)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["what"] == "generate" and summary["rows"] == 8
    assert summary["greedy_tokens_per_s"] == rows[0]["tokens_per_s"]
    md = (out / "bench.md").read_text()
    assert md.startswith(table(rows)) and "| speculative | 2 |" in md
    assert "| speculative | 2 |" in capsys.readouterr().out


def test_quality_row_by_hand(monkeypatch):
    """Four made-up completions of task:add prompts: two right answers, bigrams counted over
    their token ids, two ended by EOS."""
    from lmlab.data import load_rows
    from lmlab.infer.decode import Completion
    from lmlab.stages import bench, generate

    rows = list(load_rows("task:add", "task", split="test", limit=5))
    made = [(f"It is {rows[0]['answer']}.", [1, 2, 1, 2], "eos"),
            ("No idea", [3, 3, 3], "length"),
            (f"{rows[2]['answer']}", [7], "stop"),
            ("many words", [1, 2, 9, 9, 9, 9], "length")]

    def fake(gcfg, model, tokenizer, prompts, picked, params, draft=None):
        assert len(picked) == 4 and gcfg.batch_size == 2 and params.temperature == 0
        return [Completion(p, t, ids, why, 5) for p, (t, ids, why) in zip(prompts, made)], {}

    monkeypatch.setattr(generate, "_decode", fake)
    cfg = bench.Config(model="tiny:llama", quality=4, batch_sizes=[1, 2])
    row, samples = bench.quality(cfg, None, None, rows, "greedy")
    # bigrams (1,2)(2,1)(1,2) | (3,3)(3,3) | none | (1,2)(2,9)(9,9)(9,9)(9,9): 5 kinds of 10;
    # tokens 4 + 3 + 1 + 6 = 14 over 4 completions; eos and stop ended, length did not
    assert row == {"strategy": "greedy", "prompts": 4, "accuracy": 0.5, "distinct_2": 0.5,
                   "mean_new_tokens": 3.5, "ended": 0.5}
    assert [s["correct"] for s in samples] == [True, False, True, False]
    assert all(s["strategy"] == "greedy" for s in samples)


def test_bench_quality_pass_writes_what_generate_writes(tmp_path):
    """The quality pass is lmlab generate's decoding (EOS respected): greedy's completions
    equal lmlab generate's; rows, samples, summary and table agree."""
    out, gen = tmp_path / "b", tmp_path / "g"
    assert main(["bench", "generate", "model=tiny:llama", "data=task:add", "max_new_tokens=6",
                 "repeats=1", "batch_sizes=[1,2]", "strategies=[greedy,sample,best_of_n]",
                 "n=2", "quality=5", f"output_dir={out}"]) == 0
    assert main(["generate", "model=tiny:llama", "data=task:add", "max_new_tokens=6",
                 "strategy=greedy", "limit=5", f"output_dir={gen}"]) == 0
    q = json.loads((out / "bench.json").read_text())["quality"]
    samples = [json.loads(line) for line in (out / "quality_samples.jsonl").open()]
    assert [r["strategy"] for r in q] == ["greedy", "sample", "best_of_n"]
    assert [s["strategy"] for s in samples] == ["greedy"] * 5 + ["sample"] * 5 + ["best_of_n"] * 5
    for r in q:
        mine = [s for s in samples if s["strategy"] == r["strategy"]]
        assert r["prompts"] == 5 and 0 < r["distinct_2"] <= 1
        assert r["accuracy"] == pytest.approx(sum(s["correct"] for s in mine) / 5, abs=1e-3)
        assert r["mean_new_tokens"] == pytest.approx(sum(s["new_tokens"] for s in mine) / 5,
                                                     abs=0.05)
    written = [json.loads(line) for line in (gen / "samples.jsonl").open()]
    assert [s["completion"] for s in samples[:5]] == [s["completion"] for s in written]
    assert all("scores" in s for s in samples[10:])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quality"]["greedy"] == {k: q[0][k] for k in ("accuracy", "distinct_2")}
    md = (out / "bench.md").read_text()
    assert "| greedy | 5 |" in md and "distinct-2" in md


def test_bench_loads_the_draft_outside_the_timed_calls(tmp_path, monkeypatch):
    import lmlab.models
    from lmlab.stages import generate

    real, loads, calls = lmlab.models.load_model, [], []
    real_decode = generate._decode

    def counting(ref, *a, **kw):
        loads.append((ref, len(calls)))
        return real(ref, *a, **kw)

    def decode(*a, **kw):
        calls.append(1)
        return real_decode(*a, **kw)

    monkeypatch.setattr(lmlab.models, "load_model", counting)
    monkeypatch.setattr(generate, "_decode", decode)
    rc = main(["bench", "generate", "model=tiny:llama", "data=task:add", "max_new_tokens=4",
               "repeats=2", "batch_sizes=[1]", "strategies=[greedy,speculative]",
               "draft=tiny:llama4", "quality=2", f"output_dir={tmp_path / 'b'}"])
    # (warm-up + 2 timed) x 2 strategies, then one quality pass each
    assert rc == 0 and len(calls) == 8
    assert [n for ref, n in loads if ref == "tiny:llama4"] == [0]  # once, before any call


def test_speedups_are_relative_to_greedy_at_the_same_batch():
    rows = [{"strategy": "greedy", "batch_size": 1, "tokens_per_s": 10.0},
            {"strategy": "speculative", "batch_size": 1, "tokens_per_s": 25.0},
            {"strategy": "greedy", "batch_size": 4, "tokens_per_s": 40.0},
            {"strategy": "beam", "batch_size": 4, "tokens_per_s": 10.0},
            {"strategy": "sample", "batch_size": 8, "tokens_per_s": 80.0}]  # no greedy at 8
    add_speedups(rows)
    assert rows[1]["speedup_vs_greedy"] == 2.5 and rows[3]["speedup_vs_greedy"] == 0.25
    assert "speedup_vs_greedy" not in rows[0] and "speedup_vs_greedy" not in rows[4]
    for r in rows:
        r.update(tokens_per_s_median=r["tokens_per_s"], ttft_ms=None)
    assert "| speculative | 1 | 25.0 | 25.0 |  | 2.5x |  |" in table(rows)


def test_unknown_strategy_is_a_config_error(tmp_path, capsys):
    rc = main(["bench", "generate", "model=tiny:llama", "strategies=[greedy,beem]",
               f"output_dir={tmp_path / 'x'}"])
    assert rc == 2 and "strategies: unknown 'beem'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bench_needs_a_known_thing_to_measure(capsys):
    assert main(["bench", "serving", "model=tiny:llama"]) == 2
    assert "what" in capsys.readouterr().err


def test_a_stop_in_the_quality_pass_keeps_the_timings(tmp_path, monkeypatch):
    from lmlab.stages import bench

    def stop(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "quality", stop)
    out = tmp_path / "b"
    rc = main(["bench", "generate", "model=tiny:llama", "max_new_tokens=3", "repeats=1",
               "batch_sizes=[1]", "strategies=[greedy]", f"output_dir={out}"])
    assert rc != 0
    data = json.loads((out / "bench.json").read_text())
    assert [r["strategy"] for r in data["rows"]] == ["greedy"] and data["quality"] == []
    assert json.loads((out / "summary.json").read_text())["greedy_tokens_per_s"] > 0
    assert not (out / "quality_samples.jsonl").exists()
