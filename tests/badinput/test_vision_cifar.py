"""Bad input to `lmlab vision data=cifar10:<path>`: a path that is not there, an archive that is
not one, a folder without CIFAR-10's batches - each named, nothing written."""

TINY = ("max_steps=1", "batch_size=2", "progress=false", "flops_table=false", "insight=false")


def test_a_missing_cifar_path_is_named(fail, tmp_path):
    f = fail("vision", f"data=cifar10:{tmp_path / 'cifar-10-python.tar.gz'}",
             f"output_dir={tmp_path / 'run'}", *TINY)
    assert f.says("cifar-10-python.tar.gz", "no such file")
    assert not (tmp_path / "run").exists()


def test_a_file_that_is_no_archive_is_named(fail, tmp_path):
    bad = tmp_path / "cifar.tar.gz"
    bad.write_bytes(b"this is not a tarball")
    f = fail("vision", f"data=cifar10:{bad}", f"output_dir={tmp_path / 'run'}", *TINY)
    assert f.says("cifar.tar.gz", "not a readable CIFAR-10 archive")
    assert not (tmp_path / "run").exists()


def test_a_folder_without_batches_says_what_it_wants(fail, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "readme.html").write_text("<p>hi</p>")
    f = fail("vision", f"data=cifar10:{tmp_path / 'data'}", f"output_dir={tmp_path / 'r'}",
             *TINY)
    assert f.says("no test_batch", "python or binary version")
