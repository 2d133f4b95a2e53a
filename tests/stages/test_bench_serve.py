"""`lmlab bench serve` on the tiny model: one row per level with exact token counts (EOS
ignored), the sequential HF baseline and the speed-up over it, tables and files written, keys of
the other `what` refused, and the run picked up by `lmlab report`."""

import json
import math

import pytest

from lmlab.cli import main
from lmlab.serve.bench import HF_NAME, add_speedups, rounds_for, table

TOK = 3  # max_new_tokens of the runs here


def check_level(row: dict, clients: int, requests: int) -> None:
    assert row["server"] == "lmlab serve" and row["clients"] == clients
    assert row["requests"] == requests and row["failed"] == 0 and row["counted"] == "usage"
    assert row["tokens"] == requests * TOK  # ignore_eos: every reply is exactly max_tokens
    assert row["tok_s"] == pytest.approx(row["tokens"] / row["seconds"], rel=0.05)  # rounding
    assert 0 < row["ttft_p50"] <= row["ttft_p99"] <= row["latency_p99"] <= row["seconds"] + 1e-3
    assert row["latency_p50"] <= row["latency_p99"]


def test_bench_serve_rows_files_and_report(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bench", "serve", "model=tiny:llama", "clients=[1,2]", "requests=2",
               f"max_new_tokens={TOK}", "peers=[hf]", "hf_requests=2", "server=thread",
               "threads=1", f"output_dir={out}"])
    assert rc == 0
    bench = json.loads((out / "bench.json").read_text())
    assert bench["what"] == "serve" and bench["env"]["server"] == "thread"
    hf, one, two = bench["rows"]
    assert hf["server"] == HF_NAME and hf["requests"] == 2 and hf["tokens"] == 2 * TOK
    check_level(one, 1, 2)  # one client sends its 2 requests one after the other
    check_level(two, 2, 2)  # two clients, one request each
    for r in (one, two):
        assert r["vs_hf"] == round(r["tok_s"] / hf["tok_s"], 2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["what"] == "serve" and summary["rows"] == 3 and summary["failed"] == 0
    assert summary["tokens_per_s"] == {"1": one["tok_s"], "2": two["tok_s"]}
    assert summary["hf_tokens_per_s"] == hf["tok_s"]
    assert summary["best_tokens_per_s"] == max(one["tok_s"], two["tok_s"])
    md = (out / "bench.md").read_text()
    assert md.count("\n") == 2 + 3
    line = f"| lmlab serve | 2 | 2 | 0 | {2 * TOK} | {two['tok_s']} | {two['vs_hf']}x |"
    assert line in md and line in capsys.readouterr().out

    from lmlab.report import build_report

    build_report([out], tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "(lmlab bench serve)" in report and "| lmlab serve |" in report
    from lmlab.report.tables import fmt

    best = fmt(summary["best_tokens_per_s"])
    assert f"served {best} tok/s with {summary['best_clients']} clients (" in report


def test_bench_serve_starts_its_own_server_process(tmp_path):
    """The default: `lmlab serve` in a process of its own, its log in the run folder."""
    out = tmp_path / "p"
    rc = main(["bench", "serve", "model=tiny:llama", "clients=[2]", "requests=4",
               f"max_new_tokens={TOK}", "peers=[none]", "threads=1", f"output_dir={out}"])
    assert rc == 0
    (row,) = json.loads((out / "bench.json").read_text())["rows"]
    check_level(row, 2, 4)  # two clients, two requests each
    assert "serving tiny:llama" in (out / "logs" / "lmlab.log").read_text()
    assert "vs_hf" not in row


@pytest.mark.parametrize("args, error", [
    (["generate", "clients=[1]"], "clients: only used by what=serve"),
    (["generate", "server=thread"], "server: only used by what=serve"),
    (["serve", "strategies=[greedy]"], "strategies: only used by what=generate"),
    (["serve", "data=task:mul"], "data: only used by what=generate"),
    (["serve", "peers=[hf,vllm]"], "peers: unknown 'vllm'"),
    (["serve", "clients=[1,0]"], "clients: integers >= 1"),
    (["serve", "clients=[]", "peers=[none]"], "clients: name at least one"),
    (["serve", "server=fork"], "server"),
])
def test_keys_that_do_not_apply_are_config_errors(tmp_path, capsys, args, error):
    rc = main(["bench", *args, "model=tiny:llama", f"output_dir={tmp_path / 'x'}"])
    assert rc == 2 and error in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_rounds_give_each_level_at_least_the_requests_asked():
    assert [rounds_for(c, 16) for c in (1, 4, 16, 64)] == [16, 4, 1, 1]
    assert rounds_for(3, 16) == 5  # 15 requests: whole rounds only


def test_table_speedups_errors_and_missing_numbers():
    rows = [{"server": HF_NAME, "clients": 1, "requests": 4, "failed": 0, "tokens": 40,
             "tok_s": 10.0, "latency_p50": 1.0, "latency_p99": 1.5},
            {"server": "lmlab serve", "clients": 16, "requests": 16, "failed": 0,
             "tokens": 160, "tok_s": 80.0, "ttft_p50": 0.5, "ttft_p99": 0.9,
             "latency_p50": 2.0, "latency_p99": 2.1},
            {"server": "transformers serve (EOS)", "clients": 1, "requests": 1, "failed": 1,
             "tokens": 0, "tok_s": 0.0, "ttft_p50": math.nan, "ttft_p99": math.nan,
             "latency_p50": math.nan, "latency_p99": math.nan},
            {"server": "transformers serve (EOS)", "clients": 16, "error": "over 240 s"}]
    add_speedups(rows)
    assert "vs_hf" not in rows[0] and rows[1]["vs_hf"] == 8.0 and rows[2]["vs_hf"] == 0.0
    lines = table(rows).splitlines()
    assert len(lines) == 2 + 4 and all(x.count("|") == 12 for x in lines)
    assert lines[2] == f"| {HF_NAME} | 1 | 4 | 0 | 40 | 10.0 |  |  |  | 1.0 | 1.5 |"
    assert lines[3] == "| lmlab serve | 16 | 16 | 0 | 160 | 80.0 | 8.0x | 0.5 | 0.9 | 2.0 | 2.1 |"
    assert lines[4] == "| transformers serve (EOS) | 1 | 1 | 1 | 0 | 0.0 | 0.0x |  |  |  |  |"
    assert lines[5].startswith("| transformers serve (EOS) | 16 | error: over 240 s |")
