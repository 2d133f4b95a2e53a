"""The report's scale-out table lists sharded / checkpointed runs and skips plain ones."""

from pathlib import Path

from lmlab.report.collect import RunData
from lmlab.report.scale import scale_table


def _run(name, config, mem):
    return RunData(path=Path(name), stage="sft", config=config, label=name,
                   metrics=[{"step": 1, "train/mem_gb": mem, "train/tokens_per_s": 10.0},
                            {"step": 2, "train/mem_gb": mem + 1, "train/tokens_per_s": 30.0}])


def test_scale_table_rows():
    t = scale_table([_run("a", {"strategy": "fsdp", "fsdp_offload": True}, 1.0),
                     _run("b", {"strategy": "ddp"}, 2.0),
                     _run("c", {"strategy": "ddp", "activation_checkpointing": True}, 3.0)])
    assert t.rows == [["a", "sft", "fsdp", "yes", "no", 2.0, 20.0],
                      ["c", "sft", "ddp", "no", "yes", 4.0, 20.0]]
    assert scale_table([_run("b", {"strategy": "ddp"}, 2.0)]) is None
