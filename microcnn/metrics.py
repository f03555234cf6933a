"""Classification metrics with scikit-learn's definitions (checked against it in tests/test_metrics.py).

Per class c, from the confusion matrix M (row = true class, column = predicted class):
    precision = M[c, c] / column sum     recall = M[c, c] / row sum (the support)
    f1 = 2 * precision * recall / (precision + recall)
A ratio whose denominator is 0 is 0, as scikit-learn's default `zero_division` gives (without its warning).
The macro average is the plain mean over classes (of each class's F1, not the F1 of the mean precision and
recall); the weighted average weights each class by its support. Accuracy is the trace over the total.
"""

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) int64: row = true class, column = predicted class."""
    y_true, y_pred = _labels("y_true", y_true, num_classes), _labels("y_pred", y_pred, num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: expected {len(y_true)} labels (as many as y_true), got {len(y_pred)}")
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def _labels(name, values, num_classes):
    values = np.asarray(values).reshape(-1)
    if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0
                        or values.max() >= num_classes):
        raise ValueError(f"{name}: expected integer class indices in [0, {num_classes}), got values "
                         f"{values.min()}..{values.max()} of type {values.dtype}")
    return values.astype(np.int64)


def _ratio(numerator, denominator):
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_scores(matrix):
    """(precision, recall, f1, support) arrays, one value per class, from a confusion matrix."""
    matrix = np.asarray(matrix)
    tp = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(tp, matrix.sum(axis=0))
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, support


def classification_report(y_true, y_pred, class_names):
    """scikit-learn's classification_report(output_dict=True) in our JSON shape:
    {"accuracy", "n", "per_class": {name: {precision, recall, f1, support}}, "macro_avg", "weighted_avg",
     "confusion": [[counts]] (class order of class_names)}."""
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    return report_from_confusion(matrix, class_names)


def report_from_confusion(matrix, class_names):
    matrix = np.asarray(matrix, np.int64)
    precision, recall, f1, support = per_class_scores(matrix)
    n = int(matrix.sum())
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(class_names)}
    weights = _ratio(support, np.full(len(support), n))

    def average(w):
        return {"precision": float(np.sum(w * precision)), "recall": float(np.sum(w * recall)),
                "f1": float(np.sum(w * f1)), "support": n}

    return {"n": n, "accuracy": float(np.trace(matrix) / n) if n else 0.0, "per_class": per_class,
            "macro_avg": average(np.full(len(class_names), 1.0 / max(1, len(class_names)))),
            "weighted_avg": average(weights), "confusion": matrix.tolist()}


def row_percentages(matrix):
    """Each row of the confusion matrix as percentages of its true class (0 for an empty row)."""
    matrix = np.asarray(matrix, np.float64)
    return 100.0 * _ratio(matrix, np.broadcast_to(matrix.sum(axis=1, keepdims=True), matrix.shape))


def report_text(report, class_names, title="Evaluation"):
    """The report as scikit-learn's text table, then the confusion matrix with counts and row percentages."""
    width = max(12, *(len(name) for name in class_names)) + 2
    lines = [f"{title}: {report['n']} images, accuracy {report['accuracy']:.4f}", "",
             f"{'':>{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in class_names:
        s = report["per_class"][name]
        lines.append(f"{name:>{width}}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}"
                     f"{s['support']:>10d}")
    lines.append("")
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        s = report[key]
        lines.append(f"{label:>{width}}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}"
                     f"{s['support']:>10d}")
    lines += ["", confusion_text(report["confusion"], class_names)]
    return "\n".join(lines)


def confusion_text(matrix, class_names, title="Confusion matrix"):
    """Counts with the row percentage beside each, and each row's recall at the end."""
    matrix = np.asarray(matrix, np.int64)
    percent = row_percentages(matrix)
    digits = len(str(int(matrix.max()))) if matrix.size else 1
    cell = max(len(n) for n in class_names)
    cell = max(cell, digits + 9)
    label = max(8, *(len(n) for n in class_names))
    lines = [f"{title} (rows: true class, columns: predicted; count and % of the row):",
             " " * label + "".join(f"  {n:>{cell}}" for n in class_names) + "    recall"]
    for i, name in enumerate(class_names):
        cells = "".join(f"  {f'{matrix[i, j]} ({percent[i, j]:5.1f}%)':>{cell}}"
                        for j in range(len(class_names)))
        lines.append(f"{name:>{label}}{cells}  {percent[i, i] / 100:8.4f}")
    return "\n".join(lines)
