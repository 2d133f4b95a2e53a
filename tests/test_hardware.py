"""The hardware probe (lmlab.hardware): CPU flags, the cache key, caching, the table's text.

The probe's measurements are faked except in one test, which times the smallest product once."""

import json

import pytest
import torch

from lmlab import hardware

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
processor\t: 1
flags\t\t: fpu sse
"""


def _fake_table(fp32=100.0, bf16=800.0):
    return {"device": "cpu", "model": "Fake CPU", "torch": torch.__version__, "threads": 2,
            "flags": ["avx2"], "capability": "AVX2", "bandwidth_gbs": 12.5, "probe_s": 1.0,
            "matmul": {"fp32": {"gflops": fp32, "shapes": {"512x576x576": fp32}},
                       "bf16": {"gflops": bf16, "shapes": {"512x576x576": bf16}},
                       "fp16": {"gflops": None, "shapes": {"512x576x576": "unsupported"}},
                       "int8": {"gflops": 50.0, "shapes": {"512x576x576": 50.0}}}}


class Counter:
    def __init__(self, **kw):
        self.calls, self.kw = 0, kw

    def __call__(self, device):
        self.calls += 1
        return _fake_table(**self.kw)


def test_cpu_flags_read_the_first_flags_line_in_our_order():
    assert hardware.cpu_flags(CPUINFO) == ["avx2", "fma", "avx512f", "avx512_bf16",
                                           "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]
    assert hardware.cpu_flags("model name\t: something\n") == []


def test_the_key_names_device_model_torch_and_threads():
    k = hardware.probe_key("AMD EPYC 7B13 64-Core", "2.13.0+cpu", 2)
    assert k == "cpu-AMD_EPYC_7B13_64-Core-torch2.13.0+cpu-t2-v2"
    assert hardware.probe_key("AMD EPYC 7B13 64-Core", "2.13.0+cpu", 1) != k
    assert hardware.probe_key("AMD EPYC 7B13 64-Core", "2.14.0+cpu", 2) != k
    assert hardware.probe_key("Intel(R) Xeon(R) Processor", "2.13.0+cpu", 2) != k
    assert "/" not in hardware.probe_key("a/b (c)", "1", 1)
    limited = hardware.probe_key("AMD EPYC 7B13 64-Core", "2.13.0+cpu", 2,
                                 isa="ONEDNN_MAX_CPU_ISA=AVX2")
    assert limited == "cpu-AMD_EPYC_7B13_64-Core-torch2.13.0+cpu-t2-ONEDNN_MAX_CPU_ISA_AVX2-v2"


def test_the_second_call_reads_the_cache(tmp_path):
    measure = Counter()
    first = hardware.probe(tmp_path, measure=measure)
    second = hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 1
    assert first["cached"] is None and second["cached"].endswith(".json")
    assert {k: v for k, v in second.items() if k != "cached"} == \
        {k: v for k, v in first.items() if k != "cached"}
    files = list((tmp_path / "hardware").glob("*.json"))
    assert [f.name for f in files] == [f"{first['key']}.json"]
    hardware.probe(tmp_path, measure=measure, refresh=True)  # refresh measures again
    assert measure.calls == 2


def test_another_cpu_torch_version_or_thread_count_misses(tmp_path, monkeypatch):
    measure = Counter()
    hardware.probe(tmp_path, measure=measure)
    monkeypatch.setattr(hardware, "device_model", lambda device: "Another CPU")
    hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 2
    monkeypatch.setattr(hardware.torch, "__version__", "9.9.9")
    hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 3
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        hardware.probe(tmp_path, measure=measure)
    finally:
        torch.set_num_threads(threads)
    assert measure.calls == 4
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN's bf16 kernels limited: a miss
    hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 5
    assert len(list((tmp_path / "hardware").glob("*.json"))) == 5


def test_a_damaged_cache_file_is_measured_again(tmp_path):
    measure = Counter()
    table = hardware.probe(tmp_path, measure=measure)
    (tmp_path / "hardware" / f"{table['key']}.json").write_text("{not json")
    again = hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 2 and again["matmul"] == table["matmul"]
    json.loads((tmp_path / "hardware" / f"{table['key']}.json").read_text())


def test_speedup_and_the_text_table():
    t = _fake_table(fp32=100.0, bf16=250.0)
    assert hardware.matmul_gflops(t, "bf16") == 250.0
    assert hardware.speedup(t, "bf16") == pytest.approx(2.5)
    assert hardware.speedup(t, "fp16") is None  # unsupported: no ratio
    text = "\n".join(hardware.format_table(t))
    assert "Fake CPU" in text and "12.5 GB/s" in text and "unsupported" in text
    assert "2.50x" in text and "avx2" in text


def test_a_real_measurement_of_the_smallest_product_has_every_row(monkeypatch):
    monkeypatch.setattr(hardware, "SHAPES", ((32, 32, 32),))
    monkeypatch.setattr(hardware, "BUDGET_S", 0.005)
    monkeypatch.setattr(hardware, "BANDWIDTH_MB", 4)
    t = hardware.measure_table(torch.device("cpu"))
    assert set(t["matmul"]) == {"fp32", "bf16", "fp16", "int8"}
    assert t["matmul"]["fp32"]["gflops"] > 0 and t["bandwidth_gbs"] > 0
    for row in t["matmul"].values():  # a number, or why there is none
        v = row["shapes"]["32x32x32"]
        assert isinstance(v, float) or v.startswith("unsupported")
    assert t["threads"] == torch.get_num_threads()


def test_lmlab_env_prints_the_table_and_the_auto_choice(tmp_path, monkeypatch, capsys):
    from lmlab.cli import main

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(hardware, "measure_table", lambda device: _fake_table(100.0, 800.0))
    out_json = tmp_path / "probe.json"
    assert main(["env", f"output={out_json}"]) == 0
    out = capsys.readouterr().out
    assert "Fake CPU" in out and "8.00x" in out
    assert "dtype=auto for training: bf16 autocast (bf16 matmul 8.0x fp32" in out
    assert json.loads(out_json.read_text())["auto"] == "bf16 autocast"
    assert list((tmp_path / "hardware").glob("*.json"))  # cached for the next run


def test_the_report_table_lists_runs_that_logged_mfu(tmp_path):
    """One row per run with MFU, saying whether it compiled and at which scope (from its
    config.yaml; a config without the keys, as vision's, did not compile)."""
    from lmlab.report.collect import RunData
    from lmlab.report.hardware import hardware_tables

    cfg = {"dtype": "auto", "resolved": {"dtype": "bf16 autocast", "dtype_reason": "fast"},
           "compile": False, "compile_scope": "model"}
    step = [{"train/tokens_per_s": 100.0, "train/mfu": 0.2}]
    runs = [RunData(tmp_path, "sft", cfg, metrics=[
                {"train/tokens_per_s": 100.0, "train/mfu": 0.2},
                {"train/tokens_per_s": 300.0, "train/mfu": 0.4}], label="a"),
            RunData(tmp_path, "pretrain", {**cfg, "compile": True, "compile_scope": "blocks"},
                    metrics=step, label="c"),
            RunData(tmp_path, "dpo", {"dtype": "fp32", "compile": True}, metrics=step,
                    label="d"),
            RunData(tmp_path, "vision", {"dtype": "fp32"}, metrics=[{"train/loss": 1.0}],
                    label="b")]
    (table,) = hardware_tables(runs)
    assert table.rows == [
        ["a", "sft", "auto", "bf16 autocast", "no", 200.0, pytest.approx(0.3), "fast"],
        ["c", "pretrain", "auto", "bf16 autocast", "blocks", 100.0, 0.2, "fast"],
        ["d", "dpo", "fp32", "", "model", 100.0, 0.2, ""]]  # before compile_scope existed
    assert hardware_tables(runs[3:]) == []


def test_a_cache_from_an_older_probe_format_is_measured_again(tmp_path, monkeypatch):
    measure = Counter()
    monkeypatch.setattr(hardware, "VERSION", 1)  # a file the session-17 probe wrote
    hardware.probe(tmp_path, measure=measure)
    monkeypatch.setattr(hardware, "VERSION", 2)
    table = hardware.probe(tmp_path, measure=measure)
    assert measure.calls == 2 and table["cached"] is None and table["key"].endswith("-v2")


def test_read_bandwidth_takes_the_faster_reader_and_falls_back_to_the_sum(monkeypatch):
    from lmlab.infer import native

    monkeypatch.setattr(hardware, "_sum_bandwidth", lambda nbytes, device: 20.0)
    monkeypatch.setattr(native, "read_gbs", lambda nbytes, threads: 27.5)
    r = hardware.read_bandwidth(2**20)
    assert (r["bandwidth_gbs"], r["bandwidth_method"]) == (27.5, "C streaming read")
    assert (r["bandwidth_c_read_gbs"], r["bandwidth_sum_gbs"]) == (27.5, 20.0)
    monkeypatch.setattr(native, "read_gbs", lambda nbytes, threads: 15.0)
    assert hardware.read_bandwidth(2**20)["bandwidth_gbs"] == 20.0  # the sum was faster
    monkeypatch.setattr(native, "read_gbs", lambda nbytes, threads: None)  # no compiler
    r = hardware.read_bandwidth(2**20)
    assert (r["bandwidth_gbs"], r["bandwidth_method"]) == (20.0, "torch sum")
    assert "bandwidth_c_read_gbs" not in r

    def broken(nbytes, threads):
        raise RuntimeError("lm_read summed 1024 ones to 0.0")

    monkeypatch.setattr(native, "read_gbs", broken)
    r = hardware.read_bandwidth(2**20)
    assert r["bandwidth_gbs"] == 20.0 and "summed" in r["bandwidth_c_read_error"]
    assert "C read" not in "\n".join(hardware.format_table({**_fake_table(), **r}))
    text = "\n".join(hardware.format_table({**_fake_table(), **hardware.read_bandwidth(8)}))
    assert "20.0 GB/s (256 MB, torch sum; torch sum 20.0 GB/s)" in text


def test_read_bandwidth_measures_both_readers_for_real():
    r = hardware.read_bandwidth(4 * 2**20)
    assert r["bandwidth_sum_gbs"] > 0 and r["bandwidth_gbs"] >= r["bandwidth_sum_gbs"]
    from lmlab.infer import native

    if native.load() is not None:
        assert r["bandwidth_c_read_gbs"] > 0


def test_the_decode_bound_by_hand():
    # SmolLM2-135M in fp32 reads 538 MB a step; at 22.0 GB/s that is 22e9 / 538e6 = 40.89 tok/s
    assert hardware.decode_bound(22.0, 538e6) == pytest.approx(40.892, abs=1e-3)
    assert hardware.decode_bound(22.0, 269e6, batch=8) == pytest.approx(8 * 81.784, abs=1e-2)
