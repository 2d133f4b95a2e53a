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
    assert md.count("\n") == 2 + 8 and "| speculative | 2 |" in md
    assert "| speculative | 2 |" in capsys.readouterr().out


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
               "draft=tiny:llama4", f"output_dir={tmp_path / 'b'}"])
    assert rc == 0 and len(calls) == 6  # (warm-up + 2 timed) x 2 strategies
    assert [n for ref, n in loads if ref == "tiny:llama4"] == [3]  # once, before speculative's


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
