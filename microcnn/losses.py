"""Cross-entropy losses (Keras's sum-over-batch-size reduction) and the accuracy metric.

Both losses go through the fused `_core.softmax_cross_entropy`. On logits (the model skipped its final
softmax, or `from_logits=True`) that is exact. On probabilities, as Keras does, they are clipped to
[eps, 1 - eps] and the kernel is fed their logarithm (softmax(log p) = p / sum(p)); the gradient is then
chained back through the log.
"""

import numpy as np

from . import _core
from ._registry import Registry
from ._validation import boolean, shown

EPSILON = 1e-7


class Loss:
    sparse = False
    name = ""

    def __init__(self, from_logits=False):
        self.from_logits = boolean("from_logits", from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def prepare_labels(self, y, num_classes, argument="y"):
        """Validate labels against (N, num_classes) model outputs -> what the kernel takes."""
        raise NotImplementedError

    def class_indices(self, labels):
        raise NotImplementedError

    def __call__(self, outputs, labels, sample_weight=None, outputs_are_logits=False):
        """-> (loss, probabilities (N, M), d loss / d outputs (N, M)); labels from `prepare_labels`."""
        if outputs.ndim != 2:
            raise ValueError(f"{self.name} needs model outputs of shape (batch, classes), got {outputs.shape}")
        if outputs_are_logits or self.from_logits:
            return _core.softmax_cross_entropy(outputs, labels, sample_weight)
        clipped = np.clip(outputs, EPSILON, 1.0 - EPSILON)
        loss, _, dlog = _core.softmax_cross_entropy(np.log(clipped), labels, sample_weight)
        inside = (outputs > EPSILON) & (outputs < 1.0 - EPSILON)
        doutputs = np.where(inside, dlog / clipped, 0.0).astype(np.float32)
        return loss, outputs, doutputs


LOSSES = Registry("loss", Loss, case_insensitive=False)


@LOSSES.register("categorical_crossentropy")
class CategoricalCrossentropy(Loss):
    """Labels one-hot (or probabilities) of shape (N, M)."""

    name = "categorical_crossentropy"

    def prepare_labels(self, y, num_classes, argument="y"):
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != num_classes:
            hint = ("; for integer class indices use loss='sparse_categorical_crossentropy'"
                    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) else "")
            raise ValueError(f"{argument}: categorical_crossentropy expects one-hot labels of shape "
                             f"(batch, {num_classes}), got shape {y.shape}{hint}")
        return np.ascontiguousarray(y, dtype=np.float32)

    def class_indices(self, labels):
        return np.argmax(labels, axis=1)


@LOSSES.register("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    """Labels integer class indices of shape (N,) or (N, 1)."""

    name = "sparse_categorical_crossentropy"
    sparse = True

    def prepare_labels(self, y, num_classes, argument="y"):
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"{argument}: sparse_categorical_crossentropy expects class indices of shape "
                             f"(batch,), got shape {y.shape}; for one-hot labels use "
                             f"loss='categorical_crossentropy'")
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.isfinite(y))):
            raise ValueError(f"{argument}: expected integer class indices, got dtype {y.dtype}"
                             + (" with non-finite values" if y.dtype.kind == "f" else ""))
        labels = y.astype(np.int32)
        if y.size and (np.any(labels != y) or labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{argument}: expected integer class indices in [0, {num_classes}), got values "
                             f"from {shown(y.min())} to {shown(y.max())}")
        return np.ascontiguousarray(labels)

    def class_indices(self, labels):
        return labels


def get(identifier):
    return LOSSES.get(identifier)


def serialize(loss):
    """The name (Keras-readable) unless from_logits, else a {"class_name", "config"} dict."""
    return LOSSES.short_name(loss) if not loss.from_logits else LOSSES.serialize(loss)


ACCURACY_NAMES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def check_metrics(metrics):
    """Only accuracy is supported (reported under the name given, as Keras does)."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not isinstance(metrics, (list, tuple)):
        raise TypeError(f"metrics: expected a list such as ['accuracy'], got {metrics!r}")
    for m in metrics:
        if m not in ACCURACY_NAMES:
            raise ValueError(f"metrics: expected entries from {', '.join(map(repr, ACCURACY_NAMES))}, got {m!r}")
    return list(metrics)
