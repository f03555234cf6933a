"""microcnn.metrics against scikit-learn: accuracy, per-class precision/recall/F1/support, macro and weighted
averages, confusion matrix, including classes never predicted and classes with no images."""

import numpy as np
import pytest

from microcnn import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the metrics' reference")


def _cases():
    rng = np.random.default_rng(0)
    cases = []
    for k, n in ((2, 50), (3, 200), (5, 37), (7, 500)):
        y_true = rng.integers(0, k, n)
        y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
        cases.append((k, y_true, y_pred))
    # Class 2 never predicted, class 3 has no images and is never predicted, class 1 predicted but absent.
    cases.append((4, np.array([0, 0, 2, 2, 0]), np.array([0, 1, 0, 1, 0])))
    cases.append((3, np.array([1, 1, 1]), np.array([1, 1, 1])))  # perfect, two classes empty
    return cases


@pytest.mark.parametrize("k, y_true, y_pred", _cases())
def test_report_matches_scikit_learn(k, y_true, y_pred):
    names = [f"c{i}" for i in range(k)]
    report = metrics.classification_report(y_true, y_pred, names)
    labels = list(range(k))
    expected = sklearn_metrics.classification_report(y_true, y_pred, labels=labels, target_names=names,
                                                     output_dict=True, zero_division=0)
    assert report["n"] == len(y_true)
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred), abs=1e-12)
    for name in names:
        for key, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                            ("support", "support")):
            ours = report["per_class"][name][key]
            assert ours == pytest.approx(expected[name][theirs], abs=1e-12), (name, key)
    for ours, theirs in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for key, their_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert report[ours][key] == pytest.approx(expected[theirs][their_key], abs=1e-12), (ours, key)
    assert report["confusion"] == sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                 zero_division=0)
    ours = metrics.per_class_scores(np.array(report["confusion"]))
    for mine, theirs in zip(ours, (p, r, f, s)):
        np.testing.assert_allclose(mine, theirs, atol=1e-12)


def test_row_percentages_and_text():
    matrix = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    np.testing.assert_allclose(metrics.row_percentages(matrix), [[80, 20, 0], [0, 0, 0], [25, 25, 50]])
    text = metrics.confusion_text(matrix, ["a", "b", "c"])
    assert "8 ( 80.0%)" in text and "2 ( 50.0%)" in text
    assert text.splitlines()[2].split()[-1] == "0.8000"  # recall of class a at the end of its row


def test_bad_labels_name_the_argument():
    with pytest.raises(ValueError, match="y_pred: expected integer class indices in \\[0, 3\\)"):
        metrics.confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="y_pred: expected 2 labels"):
        metrics.confusion_matrix([0, 1], [0], 3)
