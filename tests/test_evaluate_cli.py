"""microcnn-evaluate, the test/ evaluation and split.csv of microcnn-train, the dataset check before training,
--plot-format, and microcnn-predict --explain, on tiny generated datasets."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_cli import LEVELS, make_dataset, train_args

from microcnn.cli.evaluate import main as evaluate_main
from microcnn.cli.predict import main as predict_main
from microcnn.cli.train import main as train_main

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the metrics' reference")
CLASSES = sorted(LEVELS)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A dataset with train/, validation/ and test/, and a model trained on it (test/ evaluated at the
    end)."""
    root = tmp_path_factory.mktemp("evaluate")
    data = make_dataset(root / "data", train=6, validation=3)
    make_dataset(root / "extra", train=4, validation=0)
    shutil.move(str(root / "extra" / "train"), str(data / "test"))
    out = root / "model"
    assert train_main(train_args(data, out, "--plot-format", "svg")) == 0
    return data, out


def test_training_evaluates_test_once_and_plots_in_the_chosen_format(trained):
    _, out = trained
    report = json.loads((out / "test_evaluation.json").read_text())
    assert report["n"] == 12 and report["class_names"] == CLASSES
    assert [sum(row) for row in report["confusion"]] == [4, 4, 4]
    assert report["data"].endswith("test")
    for name in ("curves.svg", "confusion.svg"):
        assert (out / name).read_text().lstrip().startswith("<?xml"), name
    assert not (out / "curves.png").exists() and not (out / "split.csv").exists()


def test_evaluate_matches_scikit_learn_and_writes_its_files(trained, tmp_path, capsys):
    data, model = trained
    out = tmp_path / "eval"
    assert evaluate_main([str(data), "--model", str(model), "--format", "json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"].endswith("test") and report["n"] == 12
    assert report == json.loads((out / "evaluation.json").read_text())
    assert report == {**json.loads((model / "test_evaluation.json").read_text()), "model": str(model)}
    rows = _rows(out / "predictions.csv")
    assert list(rows[0]) == ["path", "true", "predicted", "probability", "correct", "known", "ood_score"]
    known = np.array([r["known"] == "1" for r in rows])
    correct = np.array([r["correct"] == "1" for r in rows])
    open_set = report["open_set"]  # microcnn-train gives every model an unknown-image detector
    assert open_set["accepted"] == known.sum()
    assert open_set["accepted_fraction"] == pytest.approx(known.mean())
    if known.any():
        assert open_set["accuracy_on_accepted"] == pytest.approx(correct[known].mean())
    y_true = [CLASSES.index(r["true"]) for r in rows]
    y_pred = [CLASSES.index(r["predicted"]) for r in rows]
    assert [int(r["correct"]) for r in rows] == [int(t == p) for t, p in zip(y_true, y_pred)]
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    assert report["confusion"] == sklearn_metrics.confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist()
    f1 = sklearn_metrics.f1_score(y_true, y_pred, labels=[0, 1, 2], average=None, zero_division=0)
    assert [report["per_class"][c]["f1"] for c in CLASSES] == pytest.approx(f1.tolist())
    for name in ("confusion.png", "top_losses.png"):
        with Image.open(out / name) as image:
            assert image.info["dpi"] == pytest.approx((150, 150), abs=0.1), name


def test_evaluate_text_a_class_folder_and_errors(trained, tmp_path, capsys):
    data, model = trained
    assert evaluate_main([str(data / "validation"), "--model", str(model)]) == 0
    text = capsys.readouterr().out
    for part in ("9 images, accuracy", "macro avg", "weighted avg", "recall"):
        assert part in text, part
    bad = tmp_path / "bad"
    shutil.copytree(data / "validation", bad)
    (bad / "kiwi").mkdir()
    shutil.copy(next((bad / "apple").iterdir()), bad / "kiwi" / "k.png")
    assert evaluate_main([str(bad), "--model", str(model)]) == 1
    err = capsys.readouterr().err
    assert "class folder(s) kiwi not present" in err and len(err.strip().splitlines()) == 1
    assert evaluate_main([str(data), "--model", str(model), "--out", str(model)]) == 2
    assert "holds a model" in capsys.readouterr().err


def test_validation_split_is_saved_and_reproduces_the_validation_confusion(tmp_path, capsys):
    flat = tmp_path / "flat"
    make_dataset(tmp_path / "d", train=8, validation=0)
    shutil.move(str(tmp_path / "d" / "train"), str(flat))
    out = tmp_path / "model"
    assert train_main(train_args(flat, out, "--validation-split", "0.25")) == 0
    assert "split.csv" in capsys.readouterr().out
    rows = _rows(out / "split.csv")
    assert list(rows[0]) == ["path", "class", "subset"] and len(rows) == 24
    assert [sum(r["subset"] == s for r in rows) for s in ("train", "validation")] == [18, 6]
    assert evaluate_main([str(out / "split.csv"), "--model", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with open(out / "confusion.csv", newline="") as f:
        trained_confusion = [[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]]
    assert report["confusion"] == trained_confusion and report["n"] == 6
    (out / "test_evaluation.json").write_text("{}")  # as if an earlier run had a test/ folder
    assert train_main(train_args(flat, out, "--overwrite", epochs=1)) == 0
    assert not (out / "test_evaluation.json").exists() and (out / "split.csv").exists()


def test_leak_is_a_warning_before_training(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", train=4, validation=2)
    shutil.copy(data / "validation" / "apple" / "apple0.png", data / "train" / "apple" / "leaked.png")
    assert train_main(train_args(data, tmp_path / "m", epochs=1)) == 0
    captured = capsys.readouterr()
    assert "warning: the dataset check found 1 group(s) of repeated images" in captured.err
    assert "train/apple/leaked.png  =  validation/apple/apple0.png" in captured.err
    assert "Dataset check: sizes 8x8 (19); modes L (19); bit depths 8-bit (19)" in captured.out


def test_predict_explain_writes_a_heatmap_per_image(trained, tmp_path, capsys):
    data, model = trained
    out = tmp_path / "explain"
    first = data / "validation" / "apple" / "apple0.png"
    twin = tmp_path / "apple0.png"  # same file name from another folder: gets a suffix
    shutil.copy(data / "validation" / "mango" / "mango1.png", twin)
    assert predict_main([str(first), str(twin), "--model", str(model), "--explain", str(out)]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["apple0.npy", "apple0.png", "apple0_2.npy", "apple0_2.png"]
    heatmap = np.load(out / "apple0.npy")
    assert heatmap.shape == (8, 8) and heatmap.dtype == np.float32
    assert 0 <= heatmap.min() <= heatmap.max() <= 1


class _ThresholdDetector:
    """A model with an unknown-image detector as microcnn's models carry one (`ood`, `predict_ood`): here
    the largest probability against a threshold, so the expected figures can be computed independently."""

    def __init__(self, model, threshold):
        self.model, self.threshold, self.ood = model, threshold, "max-softmax"

    def predict(self, x, batch_size=32):
        return self.model.predict(x, batch_size=batch_size)

    def predict_ood(self, x, batch_size=32, accept=None):
        probs = self.model.predict(x, batch_size=batch_size)
        return probs, probs.max(axis=1), probs.max(axis=1) >= self.threshold


def test_open_set_figures_with_a_detector(trained):
    import microcnn
    from microcnn.data import preprocess_for_prediction
    from microcnn.evaluation import evaluate_images, labelled_images, summary_text

    data, out = trained
    model = microcnn.load_model(out, compile=False)
    meta = model.metadata
    items = labelled_images(data / "test", meta["class_names"])
    x, _, _ = preprocess_for_prediction([p for p, _ in items], meta["preprocessing"])
    probs = model.predict(x)
    threshold = float(np.median(probs.max(axis=1)))
    evaluation = evaluate_images(_ThresholdDetector(model, threshold), meta["class_names"],
                                 meta["preprocessing"], items)
    known = probs.max(axis=1) >= threshold
    correct = np.argmax(probs, axis=1) == np.array([label for _, label in items])
    open_set = evaluation.report["open_set"]
    assert open_set["accepted"] == int(known.sum()) and 0 < open_set["accepted"] < len(items)
    assert open_set["accepted_fraction"] == pytest.approx(known.mean())
    assert open_set["accuracy_on_accepted"] == pytest.approx(correct[known].mean())
    columns = list(_rows_of(evaluation.per_image_csv())[0])
    assert columns == ["path", "true", "predicted", "probability", "correct", "known", "ood_score"]
    assert f"Open set: accepted {int(known.sum())} of {len(items)} images" in summary_text(evaluation)

    model.ood = None  # a model without a detector: no open-set figures, no known/ood_score columns
    plain = evaluate_images(model, meta["class_names"], meta["preprocessing"], items)
    assert "open_set" not in plain.report and "Open set" not in summary_text(plain)
    assert list(_rows_of(plain.per_image_csv())[0]) == ["path", "true", "predicted", "probability", "correct"]
    assert plain.report["confusion"] == evaluation.report["confusion"]


def _rows_of(text):
    return list(csv.DictReader(io.StringIO(text)))
