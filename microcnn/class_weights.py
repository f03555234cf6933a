"""Class weights for imbalanced datasets, for `Model.fit(class_weight=...)`."""

import numbers

import numpy as np

__all__ = ["class_counts", "compute_class_weight"]


def class_counts(labels, num_classes):
    """Integer class labels (N,) -> number of samples of each class 0..num_classes-1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels: expected values in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return np.bincount(labels, minlength=num_classes)


def compute_class_weight(counts, mode="balanced"):
    """Per-class sample counts -> {class index: weight}.

    "balanced" (scikit-learn's heuristic): n_samples / (n_classes * count_c), so every class contributes the
    same total weight and a balanced dataset gets all ones. "none": all ones.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts: expected a non-empty 1-D sequence of integers, got {counts!r}")
    if mode not in ("balanced", "none"):
        raise ValueError(f"mode: expected 'balanced' or 'none', got {mode!r}")
    empty = np.flatnonzero(counts <= 0)
    if empty.size:
        raise ValueError(
            f"counts: expected every class to have samples, got {int(counts[empty[0]])} "
            f"for class {int(empty[0])}"
        )
    if mode == "none":
        return {c: 1.0 for c in range(counts.size)}
    total = float(counts.sum())
    return {c: total / (counts.size * float(n)) for c, n in enumerate(counts)}
