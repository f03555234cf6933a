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
    width = max(8, *(len(n) for n in class_names)) + 2
    lines = ["Validation confusion matrix (rows: true class, columns: predicted):",
             " " * width + "".join(f"{n:>{width}}" for n in class_names)]
    for name, row in zip(class_names, matrix):
        lines.append(f"{name:>{width}}" + "".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def confusion_csv(matrix, class_names):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *(int(v) for v in row)])
    return out.getvalue()


def save_plots(out_dir, history, matrix, class_names):
    """curves.png and confusion.png when matplotlib is installed; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return []
    written = []
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    if len(epochs):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, history[key], label="train")
            val = history.get("val_" + key)
            if val:
                ax.plot(epochs[: len(val)], val, label="validation")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        written.append(_savefig(fig, os.path.join(out_dir, "curves.png")))
        plt.close(fig)
    if matrix is not None:
        n = len(class_names)
        fig, ax = plt.subplots(figsize=(1.2 * n + 3, 1.2 * n + 2))
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        limit = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > limit else "black")
        ax.set_title("Validation confusion matrix")
        fig.tight_layout()
        written.append(_savefig(fig, os.path.join(out_dir, "confusion.png")))
        plt.close(fig)
    return written


def _savefig(fig, path):
    with _atomic.replacing(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    return path
