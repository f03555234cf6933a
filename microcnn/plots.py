"""Figures for a lab notebook: training curves, confusion matrix, most confidently wrong images. matplotlib is
optional (`pip install 'microcnn[plots]'`): every function returns None when it is missing, else the path it
wrote. Figures are saved at 150 dpi as png, svg or pdf, atomically (microcnn/_atomic.py)."""

import os

import numpy as np

from . import _atomic
from .metrics import row_percentages

PLOT_FORMATS = ("png", "svg", "pdf")
DPI = 150


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path):
    """Write fig to path (format from its extension) through a temporary file and a rename."""
    suffix = os.path.splitext(str(path))[1]
    with _atomic.replacing(path, suffix) as tmp:
        fig.savefig(tmp, dpi=DPI, format=suffix[1:])
    return str(path)


def _check_format(fmt):
    if fmt not in PLOT_FORMATS:
        raise ValueError(f"plot format: expected one of {', '.join(PLOT_FORMATS)}, got {fmt!r}")


def training_curves(path, history, saved_epoch=None, details=None):
    """Loss and accuracy per epoch (train and validation), accuracy on a fixed 0-1 axis, the saved epoch
    marked, the learning rate on a second axis when it changed during the run, `details` ({label: value}:
    dataset, architecture, images, seed) in the title."""
    plt = _pyplot()
    losses = history.get("loss", [])
    if plt is None or not losses:
        return None
    epochs = np.arange(1, len(losses) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, _floats(history[key]), marker=".", label="train")
        val = history.get("val_" + key)
        if val and any(v is not None for v in val):
            ax.plot(epochs[: len(val)], _floats(val), marker=".", label="validation")
        if saved_epoch is not None:
            ax.axvline(saved_epoch, color="tab:red", linestyle="--", linewidth=1,
                       label=f"saved (epoch {saved_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_xlim(0.5, max(len(losses), 1) + 0.5)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1)
    lrs = [v for v in history.get("lr", []) if v is not None]
    if len(set(lrs)) > 1:
        twin = axes[0].twinx()
        twin.plot(epochs[: len(lrs)], lrs, color="tab:gray", linestyle=":", label="learning rate")
        twin.set_ylabel("learning rate", color="tab:gray")
        twin.set_yscale("log")
        handles, labels = axes[0].get_legend_handles_labels()
        more_handles, more_labels = twin.get_legend_handles_labels()
        axes[0].legend(handles + more_handles, labels + more_labels, fontsize="small")
    else:
        axes[0].legend(fontsize="small")
    axes[1].legend(fontsize="small", loc="lower right")
    if details:
        fig.suptitle("  |  ".join(f"{k}: {v}" for k, v in details.items()), fontsize="medium")
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _floats(values):
    return [np.nan if v is None else float(v) for v in values]


def confusion(path, matrix, class_names, title="Confusion matrix"):
    """Counts and row percentages in every cell, shaded by the row percentage; per-class recall beside each
    row; accuracy in the title."""
    plt = _pyplot()
    if plt is None:
        return None
    matrix = np.asarray(matrix, np.int64)
    n = len(class_names)
    percent = row_percentages(matrix)
    fig, ax = plt.subplots(figsize=(1.3 * n + 3.5, 1.1 * n + 2.2))
    ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), [f"{name}\nrecall {percent[i, i] / 100:.3f}"
                             for i, name in enumerate(class_names)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]}\n{percent[i, j]:.1f}%", ha="center", va="center", fontsize="small",
                    color="white" if percent[i, j] > 50 else "black")
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / total if total else 0.0
    ax.set_title(f"{title}\n{total} images, accuracy {accuracy:.4f} (cells: count, % of the true class)",
                 fontsize="medium")
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def image_grid(path, images, captions, title, columns=5):
    """images: list of (H, W, C) float arrays in [0, 1] (or near it); captions: one text per image."""
    plt = _pyplot()
    if plt is None:
        return None
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    figsize = (max(2.4 * columns, 6.0), 2.7 * rows + 0.6)  # wide enough for the title with one image
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        image = np.clip(np.asarray(image, np.float32), 0, 1)
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image)
        ax.set_title(caption, fontsize="x-small")
    if count == 0:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
