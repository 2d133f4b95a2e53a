"""The report's llama.cpp section: generate runs by engine, only when one ran on llama.cpp."""

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.llamacpp import engine_table, llamacpp_items


def run(label, **summary):
    return RunData(Path(label), "generate", {"data": "task:add", "dtype": "auto"},
                   summary={"stage": "generate", "strategy": "greedy", "prompts": 8,
                            **summary}, label=label)


def test_generate_runs_side_by_side_by_engine():
    ours = run("ours", tokens_per_s=40.0, accuracy=0.25)
    llama = run("llama", tokens_per_s=100.0, accuracy=0.125, engine="llama.cpp",
                gguf_file="/c/gguf/x/model.q8_0.gguf")
    assert llamacpp_items([ours]) == []  # no llama.cpp run: no section
    t = engine_table([ours, llama, RunData(Path("sft"), "sft", {}, summary={}, label="sft")])
    assert t.rows == [["ours", "lmlab", "auto", "task:add", "greedy", 8, 40.0, 0.25],
                      ["llama", "llama.cpp", "model.q8_0.gguf", "task:add", "greedy", 8, 100.0,
                       0.125]]
