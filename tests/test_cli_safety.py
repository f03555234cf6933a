"""The command-line tools never lose or delete the user's files, never hang on odd files, and keep working
when stdout goes away (issue items D1-D3, H1, U3, U4 and the cosmetic ones)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from test_cli import make_dataset, train_args

import microcnn
from microcnn import _atomic
from microcnn.cli import _report
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main
from microcnn.data import scan


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("safety") / "data", train=3, validation=1)


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety-model") / "m"
    assert train_main(train_args(dataset, out, epochs=1)) == 0
    return out


def test_overwrite_keeps_a_user_made_checkpoint_folder_and_link(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "my-notes.txt").write_text("mine")
    assert train_main(train_args(dataset, out, "--overwrite", epochs=1)) == 0
    assert (out / "checkpoint" / "my-notes.txt").read_text() == "mine"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("keep")
    (out / "checkpoint" / "my-notes.txt").unlink()
    (out / "checkpoint").rmdir()
    (out / "checkpoint").symlink_to(elsewhere)
    assert train_main(train_args(dataset, out, "--overwrite", epochs=1)) == 0
    assert (out / "checkpoint").is_symlink() and (elsewhere / "data.txt").read_text() == "keep"
    capsys.readouterr()


def test_ctrl_c_during_the_final_save_still_saves_everything(dataset, tmp_path, capsys, monkeypatch):
    original = _report.history_csv

    def interrupted(history):
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, in the middle of the final save
        return original(history)

    monkeypatch.setattr(_report, "history_csv", interrupted)
    out = tmp_path / "out"
    assert train_main(train_args(dataset, out, epochs=1)) == 0
    assert "interrupted after the model was saved completely" in capsys.readouterr().err
    assert (out / "history.csv").exists() and microcnn.load_model(out).metadata["training"]["epochs_completed"] == 1


def test_an_unwritable_out_is_refused_before_any_work(dataset, tmp_path, capsys):
    for out in ("/proc/microcnn-out", "/dev/full/out"):
        assert train_main(train_args(dataset, out, epochs=1)) == 1
        captured = capsys.readouterr()
        assert f"--out {out}: cannot write there" in captured.err and "Reading" not in captured.out


def test_a_full_disk_error_names_the_file():
    with pytest.raises(OSError) as excinfo:
        _atomic.write_synced("/dev/full", b"x" * 100000)
    assert excinfo.value.filename == "/dev/full" and "No space left" in excinfo.value.strerror


def test_absurd_thread_count_is_a_usage_error(dataset, model, capsys):
    assert predict_main([str(dataset), "--model", str(model), "--threads", "1099511627776"]) == 2
    assert "--threads: expected a thread count from 1 to 4096" in capsys.readouterr().err


def test_a_fifo_is_skipped_not_waited_on(dataset, model, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    assert predict_main([str(fifo), "--model", str(model)]) == 1
    assert "pipe.png: not a regular file" in capsys.readouterr().err and time.monotonic() - t0 < 60


def test_a_newline_in_a_file_name_does_not_split_the_output_line(dataset, model, tmp_path, capsys):
    image = tmp_path / "two\nlines.png"
    Image.fromarray(np.full((8, 8), 120, np.uint8)).save(image)
    assert predict_main([str(image), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "two\\nlines.png: " in out


def test_class_folders_named_train_or_val_in_a_flat_dataset(tmp_path):
    for name in ("train", "val", "cat"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name / f"{i}.png")
    class_names, splits, _ = scan(tmp_path)
    assert class_names == ["cat", "train", "val"] and len(splits["validation"]) == 3


def _run(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_training_carries_on_when_stdout_closes(dataset, tmp_path):
    out = tmp_path / "m"
    with _run(["microcnn.cli.train", *train_args(dataset, out, epochs=1)], cwd=tmp_path) as proc:
        proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err and (out / "history.csv").exists()
    closed = subprocess.run(["sh", "-c", f'"{sys.executable}" -m microcnn.cli.train "$@" >&-', "sh",
                             *train_args(dataset, tmp_path / "m2", epochs=1)], check=False, capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)
    assert closed.returncode == 0 and closed.stderr.count("error") == 0, closed.stderr
    assert (tmp_path / "m2" / "config.json").exists()


def test_predict_into_a_closed_pipe_ends_quietly(dataset, model, tmp_path):
    with _run(["microcnn.cli.predict", str(dataset), "--model", str(model)], cwd=tmp_path) as proc:
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0 and err == "", err


def test_ctrl_c_while_the_tool_starts_is_one_line(tmp_path):
    # argv[0] as the console script's: the start-up handler is installed by `import microcnn`.
    code = ("import sys, time; sys.argv[0] = 'microcnn-train'; import microcnn; print('ready', flush=True); "
            "import microcnn.cli.train; time.sleep(60)")
    # A parent that ignores SIGINT (as a background job does) passes that on: start from Python's default.
    code = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); " + code
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=tmp_path) as proc:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()
        status = proc.wait(timeout=60)
    assert status == 130 and "Traceback" not in err and err.strip() == "microcnn-train: interrupted"
