"""Bad input to `lmlab vision ema=...`: a decay out of range; resuming with ema a checkpoint
written without one."""

TINY = ("data=digits", "widths=[8,16]", "batch_size=32", "progress=false", "flops_table=false",
        "insight=false")


def test_an_ema_decay_out_of_range_is_named(fail, tmp_path):
    for bad in ("1", "0.2"):
        f = fail("vision", f"output_dir={tmp_path / 'r'}", *TINY, "max_steps=1", f"ema={bad}")
        assert f.says("ema=", "[0.5, 1)")
    assert fail("vision", f"output_dir={tmp_path / 'r'}", *TINY, "max_steps=1",
                "ema=1.5").says("ema")
    assert not (tmp_path / "r").exists()


def test_resuming_without_an_average_with_ema_is_named(fail, tmp_path):
    from lmlab.cli import main

    run = tmp_path / "r"
    assert main(["vision", f"output_dir={run}", *TINY, "max_steps=2"]) == 0
    f = fail("vision", f"output_dir={run}", *TINY, "max_steps=3", "resume=auto", "ema=0.9")
    assert f.says("step-2", "without ema")
