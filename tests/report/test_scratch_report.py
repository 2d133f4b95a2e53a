"""The report's "Neural networks by hand" section reads a `lmlab scratch` run's summary.json."""

from lmlab.cli import main
from lmlab.report import build_report


def test_report_shows_the_scratch_labs(tmp_path):
    run = tmp_path / "runs" / "scratch"
    assert main(["scratch", "lab=all", "xor_steps=300", "xor_seeds=1", "moons=6", "moons_steps=2",
                 "width=2", f"output_dir={run}"]) == 0
    build_report([tmp_path / "runs"], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Neural networks by hand" in md
    assert "From-scratch labs: scratch" in md and "NumPy layers against torch" in md
    assert "| perceptron | XOR | accuracy 50.0% after 50 epochs, never converged |" in md
    assert "conv2d stride 2 pad 1" in md and "random starts solved (of 1)" in md
    assert "scratch" in (tmp_path / "report" / "report.html").read_text()


def test_no_section_without_a_scratch_run(tmp_path):
    from lmlab.report.scratch import scratch_tables

    assert scratch_tables([]) == []
