"""The Sequential API of the open-set detector (microcnn/ood.py): penultimate features, fit_ood,
ood_score, predict_ood. Features come from the same inference forward pass as the probabilities."""

import numpy as np

from . import ood as _ood
from ._batches import make_source
from ._ood_layers import channel_stats

SCORE_CHUNK = 1 << 18  # features (rows x width) scored per call: 1024 rows of 256


class OpenSetMixin:
    ood = None  # an ood.OODDetector once fit_ood ran (or the model file had one)

    def _feature_layer(self):
        """Index of the final Dense layer: its input is the penultimate feature vector."""
        from .layers import Dense

        self._require_built("features")
        for i in range(len(self._layers) - 1, -1, -1):
            if isinstance(self._layers[i], Dense):
                return i
        raise ValueError("features: the model has no Dense layer; the penultimate features are the input of "
                         "the final Dense layer")

    def _logits(self, features):
        """The final Dense layer's pre-activation output, from its input (a (N, D) @ (D, C) product)."""
        from . import _core

        dense = self._layers[self._feature_layer()]
        return _core.dense_forward(np.ascontiguousarray(features, np.float32), dense._weights["kernel"],
                                   dense._weights.get("bias"))

    def _predict_batches(self, x, batch_size, argument="x", taps=False):
        """Yields (outputs, features, labels or None) per batch, in inference mode, one forward pass each.
        taps: the features are followed by each convolution block's channel statistics (ood "multilayer");
        self._tap_dims then holds their widths."""
        dense = self._layers[self._feature_layer()]
        source = make_source(x, None, None, 32 if batch_size is None else int(batch_size), argument)
        for xb, yb, _ in source.batches(None):
            plan = self._current_plan()
            split = plan.index(dense)  # the steps before the final Dense give the features, the rest the outputs
            if taps:  # each convolution block's output (N, H, W, C) summarised as it is made
                stats = []
                features = plan.forward(self._prepare_x(xb, argument), training=False, stop=split,
                                        tap=lambda maps, stats=stats: stats.append(channel_stats(maps)))
                self._tap_dims = [s.shape[1] for s in stats]
                yield plan.forward(features, training=False, start=split), np.concatenate(
                    [np.asarray(features, np.float32).reshape(len(features), -1)] + stats, axis=1), yb
                continue
            features = plan.forward(self._prepare_x(xb, argument), training=False, stop=split)
            yield plan.forward(features, training=False, start=split), features, yb

    def predict_with_features(self, x, batch_size=32):
        """(outputs, penultimate features) for every sample of x, from one forward pass per batch."""
        outputs, features = [], []
        for out, feat, _ in self._predict_batches(x, batch_size):
            outputs.append(out)
            features.append(np.array(feat, np.float32))
        if not outputs:
            raise ValueError("x: yielded no batches to predict")
        return np.concatenate(outputs), np.concatenate(features)

    def features(self, x, batch_size=32):
        """The penultimate features (the input of the final Dense layer) of every sample, (N, D)."""
        return self.predict_with_features(x, batch_size)[1]

    def fit_ood(self, x, y=None, validation_data=None, method=_ood.DEFAULT_METHOD, accept=0.95, batch_size=32,
                **options):
        """Fit the open-set detector on training data and calibrate it on held-out known data.

        x, y: training images and labels (class indices or one-hot), or a re-iterable of (x, y) batches; with
        y=None and an array x, the predicted classes serve as labels. validation_data: held-out images of the
        known classes (an array, or batches of (x, y)); the threshold accepts the fraction `accept` of them.
        Without it the training images calibrate, which accepts fewer unseen known images than asked.
        method: one of ood.METHODS; options: k, bank_size, seed (knn). Returns the detector (also self.ood)."""
        _ood.check_accept(accept)
        detector = _ood.OODDetector(method, **options)
        feats, logits, labels = [], [], []
        if y is not None and not isinstance(x, np.ndarray):
            raise ValueError("y: must be None when x is an iterable of batches (the batches carry the labels)")
        source = x if y is None else _Labelled(x, y, batch_size)
        for out, feat, yb in self._predict_batches(source, batch_size, taps=detector.taps):
            feats.append(np.array(feat, np.float32))
            logits.append(self._logits(self._penultimate(feat)))
            labels.append(np.argmax(out, axis=1) if yb is None else _class_indices(yb))
        if not feats:
            raise ValueError("x: yielded no batches to fit the detector on")
        feats, logits = np.concatenate(feats), np.concatenate(logits)
        detector.fit(feats, logits, np.concatenate(labels), getattr(self, "_tap_dims", []))
        if validation_data is None:
            scores = detector.score(feats, logits)
        else:
            if detector.taps:  # each layer's scale from the held-out known images, as the threshold
                held_out = self._held_out(validation_data)
                detector.set_normalisation(detector.layer_scores(np.concatenate(
                    [f for _, f, _ in self._predict_batches(held_out, batch_size, "validation_data", True)])))
            scores = self._scores_with(detector, validation_data, batch_size, "validation_data")
        detector.calibrate(scores, accept)
        self.ood = detector
        return detector

    def _scored_batches(self, detector, x, batch_size, argument="x"):
        """Yields ([outputs of each batch], scores of their rows), scoring a few batches at a time: per-batch
        calls cost more than the scoring itself on small images."""
        pending, features = [], []
        for out, feat, _ in self._predict_batches(x, batch_size, argument, taps=detector.taps):
            pending.append(out)
            features.append(feat)
            if sum(len(f) for f in features) * feat.shape[1] >= SCORE_CHUNK:
                yield pending, self._score_rows(detector, features)
                pending, features = [], []
        if pending:
            yield pending, self._score_rows(detector, features)

    def _score_rows(self, detector, features):
        features = np.concatenate(features)
        return detector.score(features, self._logits(self._penultimate(features)))

    def _penultimate(self, features):
        """The penultimate features: the first columns when channel statistics follow them."""
        return np.ascontiguousarray(features[:, :self._layers[self._feature_layer()]._weights["kernel"].shape[0]])

    @staticmethod
    def _held_out(x):
        if isinstance(x, (tuple, list)) and len(x) in (2, 3) and isinstance(x[0], np.ndarray):
            return x[0]  # (x_val, y_val): labels are not needed to score
        return x

    def _scores_with(self, detector, x, batch_size, argument="x"):
        x = self._held_out(x)
        scores = [s for _, s in self._scored_batches(detector, x, batch_size, argument)]
        if not scores:
            raise ValueError(f"{argument}: yielded no batches to score")
        return np.concatenate(scores)

    def _require_ood(self, what):
        if self.ood is None:
            raise RuntimeError(f"{what}: the model has no open-set detector; call model.fit_ood(x_train, "
                               f"y_train, validation_data=x_val) first")

    def ood_score(self, x, batch_size=32):
        """Detector scores, float64 (N,): higher = more like the training data."""
        self._require_ood("ood_score")
        return self._scores_with(self.ood, x, batch_size)

    def predict_ood(self, x, batch_size=32, accept=None):
        """(probabilities, scores, known) for every sample in one forward pass per batch; `known` is True
        where the score reaches the threshold (calibrated at fit_ood's accept fraction, or `accept`)."""
        self._require_ood("predict_ood")
        threshold = self.ood.threshold if accept is None else self.ood.threshold_for(accept)
        outputs, scores = [], []
        for batch_outputs, batch_scores in self._scored_batches(self.ood, x, batch_size):
            outputs.extend(batch_outputs)
            scores.append(batch_scores)
        if not outputs:
            raise ValueError("x: yielded no batches to predict")
        scores = np.concatenate(scores)
        return np.concatenate(outputs), scores, scores >= threshold


class _Labelled:
    """(x, y) arrays as a list of labelled batches, so one loop serves arrays and batch sources."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, np.asarray(y), int(batch_size)
        if len(self.y) != len(x):
            raise ValueError(f"y: expected {len(x)} labels (one per sample of x), got {len(self.y)}")

    def __len__(self):
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        for start in range(0, len(self.x), self.batch_size):
            yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]


def _class_indices(y):
    y = np.asarray(y)
    return np.argmax(y, axis=1) if y.ndim == 2 else y.reshape(-1).astype(np.int64)
