"""Training outputs next to the model: history.csv, the validation confusion matrix, optional plots."""

import csv
import io
import os

import numpy as np

from .. import _atomic

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def write_atomic(path, text):
    """Write text to path via a temporary file and a rename, so a crash never leaves half a file."""
    _atomic.write_atomic(path, text)


def history_csv(history):
    """history: {"loss": [...], ...} per epoch (epochs counted from 1) -> CSV text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for i in range(len(history.get("loss", []))):
        row = [i + 1]
        for key in HISTORY_COLUMNS[1:]:
            values = history.get(key, [])
            row.append(f"{values[i]:.6f}" if i < len(values) and values[i] is not None else "")
        writer.writerow(row)
    return out.getvalue()


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) int64: row = true class, column = predicted class."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def confusion_text(matrix, class_names):
    from ..metrics import confusion_text as text

    return text(matrix, class_names, title="Validation confusion matrix")


def confusion_csv(matrix, class_names):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *(int(v) for v in row)])
    return out.getvalue()


def save_plots(out_dir, history, matrix, class_names, saved_epoch=None, details=None, plot_format="png"):
    """curves.<fmt> and confusion.<fmt> when matplotlib is installed (see microcnn/plots.py); returns the
    files written."""
    from .. import plots

    written = [plots.training_curves(os.path.join(out_dir, f"curves.{plot_format}"), history, saved_epoch,
                                     details)]
    if matrix is not None:
        written.append(plots.confusion(os.path.join(out_dir, f"confusion.{plot_format}"), matrix, class_names,
                                       title="Validation confusion matrix"))
    return [path for path in written if path is not None]
