"""Open-set detection: does an input resemble the training data at all?

A detector turns a model's penultimate features (the input of its final Dense layer, taken in the same
forward pass as the probabilities) and its logits into one score per input -- higher means more like the
training data -- and accepts an input when its score reaches a threshold. The threshold is calibrated on
held-out known images: accepting a fraction `accept` of them puts it at their (1 - accept) quantile. The
quantiles of those validation scores are kept, so the accepted fraction can be changed later without
refitting.

Methods (`METHODS`), compared by benchmarks/open_set.py:
    max-softmax      the largest class probability (what a plain classifier offers; the baseline)
    energy           logsumexp of the logits
    mahalanobis      minus the Mahalanobis distance to the nearest class mean (class means and one shared
                     covariance of the training features)
    mahalanobis-l2   the same on L2-normalised features
    multilayer       (the default) Lee et al. 2018: a Mahalanobis score at several depths -- the L2-normalised penultimate
                     features and each convolution block's per-channel mean and standard deviation
                     (microcnn/_ood_layers.py), Ledoit-Wolf shrunk covariances -- each normalised by its
                     median and spread on the calibration images; the worst layer decides (the minimum).
                     Penultimate features alone miss noise and flat images when a network learnt from a few
                     hundred images; the first blocks' statistics catch them
    knn              minus the distance to the k-th nearest training feature, features L2-normalised; the
                     bank is a seeded subsample of at most `bank_size` training images

Features wider than MAX_DIRECT_DIM (a Flatten head on large images) are first reduced to SKETCH_DIM by a
fixed signed feature hashing (a count sketch: nothing to store, the same on every machine), which keeps the
covariance small. Everything stored is a few float32 tensors plus JSON-able settings (see get_config /
get_tensors); nothing is pickled.
"""

import hashlib

import numpy as np

from . import _core
from . import _ood_layers as _layers

METHODS = ("multilayer", "mahalanobis-l2", "mahalanobis", "knn", "energy", "max-softmax")
DEFAULT_METHOD = "multilayer"
FILE = "ood.safetensors"
MAX_DIRECT_DIM = 2048
SKETCH_DIM = 1024
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 201)  # the validation score quantiles kept for --accept
# Scores within this relative distance of the threshold count as reaching it: a validation image at the
# threshold scores a few float32 ulps differently when predicted in another batch.
TOLERANCE = 1e-5
SHRINKAGE = 1e-3  # covariance + SHRINKAGE * (mean variance) * I: dead ReLU units make it singular otherwise


def check_accept(accept, argument="accept"):
    if isinstance(accept, bool) or not isinstance(accept, (int, float, np.floating)) or not 0.0 < accept < 1.0:
        raise ValueError(f"{argument}: expected a fraction between 0 and 1 (e.g. 0.95), got {accept!r}")
    return float(accept)


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"ood method: expected one of {', '.join(METHODS)}, got {method!r}")
    return method


def logsumexp(z):
    m = np.max(z, axis=1, keepdims=True)
    return (m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True)))[:, 0]


def _matmul(a, b):
    """a (N, K) @ b (K, M) in float32 with microcnn's GEMM: NumPy's threaded BLAS was 35x slower on batches
    of 32 rows when its threads competed with the kernels' (2 busy cores)."""
    return _core.dense_forward(np.ascontiguousarray(a, np.float32), b, None)


def _l2_normalise(f):
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _sketch_plan(dim, out_dim):
    """A fixed signed hashing of `dim` features into `out_dim` buckets: (order, starts, signs) for reduceat.
    Multiplicative hashing of the index (Knuth's constant), so it depends on nothing but the two sizes."""
    index = np.arange(dim, dtype=np.uint64)
    mixed = (index * np.uint64(2654435761) + np.uint64(40503)) & np.uint64(0xFFFFFFFF)
    bucket = (mixed % np.uint64(out_dim)).astype(np.int64)
    signs = np.where((mixed >> np.uint64(16)) & np.uint64(1), 1.0, -1.0).astype(np.float32)
    order = np.argsort(bucket, kind="stable")
    starts = np.searchsorted(bucket[order], np.arange(out_dim))
    return order, starts, signs[order]


class OODDetector:
    """Scores inputs by their likeness to the training data; see the module docstring.

    `fit(features, logits, labels)` on training data, then `calibrate(scores_of_validation, accept)`;
    `score(features, logits)` -> float64 scores; `is_known(scores, accept=None)` -> bool array."""

    def __init__(self, method=DEFAULT_METHOD, k=10, bank_size=2000, seed=0):
        self.method = check_method(method)
        self.k = int(k)
        self.bank_size = int(bank_size)
        self.seed = int(seed)
        self.feature_dim = None
        self.layer_dims = []  # multilayer: widths of the per-block statistics after the penultimate features
        self.sketch_dim = None
        self.tensors = {}
        self.accept = None
        self.threshold = None
        self.quantiles = None

    # --- fitting -------------------------------------------------------------------------------------
    def _reduce(self, features):
        f = np.asarray(features, np.float32)
        if self.sketch_dim is None:
            return f
        order, starts, signs = self._sketch
        return np.add.reduceat(f[:, order] * signs, starts, axis=1)

    def _prepare(self, features):
        f = self._reduce(features)
        return _l2_normalise(f) if self.method in ("knn", "mahalanobis-l2") else f

    @property
    def taps(self):
        """True when score() wants each convolution block's channel statistics after the features."""
        return self.method == "multilayer"

    def fit(self, features, logits, labels, layer_dims=()):
        """Training features (N, D), logits (N, C) and integer labels (N,) -> self. For "multilayer", features
        are the penultimate features followed by blocks of widths `layer_dims` (see `taps`)."""
        features = np.asarray(features, np.float32)
        labels = np.asarray(labels).reshape(-1)
        if features.ndim != 2 or len(features) != len(labels) or len(features) == 0:
            raise ValueError(f"features: expected (N, D) with one label per row, got {features.shape} and "
                             f"{labels.shape[0]} labels")
        self.layer_dims = [int(d) for d in layer_dims] if self.taps else []
        self.feature_dim = features.shape[1] - sum(self.layer_dims)
        if self.taps and (self.feature_dim < 1 or min(self.layer_dims, default=1) < 1):
            raise ValueError(f"features: {features.shape[1]} columns do not hold blocks of {self.layer_dims}")
        self.num_classes = int(np.shape(logits)[1])
        self.sketch_dim = SKETCH_DIM if self.feature_dim > MAX_DIRECT_DIM else None
        if self.sketch_dim is not None:
            self._sketch = _sketch_plan(self.feature_dim, self.sketch_dim)
        if self.method in ("mahalanobis", "mahalanobis-l2"):
            self.tensors = self._fit_mahalanobis(self._prepare(features), labels)
        elif self.taps:
            self.tensors = {}
            for i, block in enumerate(self._blocks(features)):
                fitted = _layers.fit_gaussian(block, labels, self.num_classes)
                self.tensors.update({f"{name}_{i}": value for name, value in fitted.items()})
            self.set_normalisation(self.layer_scores(features))
        elif self.method == "knn":
            f = self._prepare(features)
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.permutation(len(f))[:self.bank_size])
            self.tensors = {"bank": np.ascontiguousarray(f[keep], np.float32)}
        else:
            self.tensors = {}
        return self

    def _fit_mahalanobis(self, f, labels):
        def covariance(centred):
            # float32 product through microcnn's GEMM (NumPy's threaded float64 one took seconds when busy)
            centred = np.ascontiguousarray(centred, np.float32)
            cov = _matmul(np.ascontiguousarray(centred.T), centred).astype(np.float64) / len(centred)
            return cov + SHRINKAGE * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))

        return _layers.fit_gaussian(f, labels, self.num_classes, covariance)

    # --- scoring -------------------------------------------------------------------------------------
    def _blocks(self, features):
        """multilayer: the L2-normalised penultimate features, then each block of channel statistics."""
        features = np.asarray(features, np.float32)
        bounds = np.cumsum([self.feature_dim] + self.layer_dims)
        if features.ndim != 2 or features.shape[1] != bounds[-1]:
            raise ValueError(f"features: expected (N, {bounds[-1]}), got {features.shape}")
        return [_l2_normalise(self._reduce(features[:, :self.feature_dim]))] + [
            features[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def layer_scores(self, features):
        """multilayer: minus the Mahalanobis distance at each depth, float64 (N, layers)."""
        return np.stack([_layers.mahalanobis_score(block, self.tensors[f"whiten_{i}"], self.tensors[f"means_{i}"])
                         for i, block in enumerate(self._blocks(features))], axis=1)

    def set_normalisation(self, layer_scores):
        """multilayer: each layer's score is centred and scaled by its median and spread on these known
        images' layer scores (fit sets it from the training images; fit_ood from the validation images)."""
        centre, scale = _layers.robust_normalisation(layer_scores)
        self.tensors.update({"centre": centre, "scale": scale})
        return self

    def score(self, features, logits):
        """Higher = more like the training data; float64 (N,)."""
        if self.taps:
            s = (self.layer_scores(features) - self.tensors["centre"]) / self.tensors["scale"]
            return np.min(s, axis=1)
        logits = np.asarray(logits, np.float64)
        if self.method == "max-softmax":
            return np.exp(np.max(logits, axis=1) - logsumexp(logits))
        if self.method == "energy":
            return logsumexp(logits)
        f = self._prepare(features)
        transposed = self._transposed()
        if self.method == "knn":
            bank_size = transposed.shape[1]
            similarity = _matmul(f, transposed)  # unit vectors: |a - b|^2 = 2 - 2 a.b
            k = min(self.k, bank_size)
            kth = np.partition(similarity, bank_size - k, axis=1)[:, bank_size - k]
            return -np.sqrt(np.maximum(2.0 - 2.0 * kth.astype(np.float64), 0.0))
        z = _matmul(f, self.tensors["whiten"])
        d2 = (np.sum(z * z, axis=1, keepdims=True) - 2.0 * _matmul(z, transposed)
              + self._mean_norms[None, :]).astype(np.float64)
        return -np.sqrt(np.maximum(np.min(d2, axis=1), 0.0))

    def _transposed(self):
        """The bank or the class means as a contiguous (D, M) right-hand side, made once."""
        key = "bank" if self.method == "knn" else "means"
        if getattr(self, "_rhs_of", None) is not self.tensors[key]:
            self._rhs = np.ascontiguousarray(self.tensors[key].T)
            self._mean_norms = np.sum(self.tensors[key].astype(np.float64) ** 2, axis=1).astype(np.float32)
            self._rhs_of = self.tensors[key]
        return self._rhs

    # --- calibration ---------------------------------------------------------------------------------
    def calibrate(self, scores, accept=0.95):
        """Keep the quantiles of held-out known images' scores; threshold for accepting `accept` of them."""
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(scores) == 0 or not np.all(np.isfinite(scores)):
            raise ValueError(f"scores: expected finite calibration scores, got {len(scores)} values")
        # "lower": the threshold is a validation score, so at least `accept` of them reach it (9 validation
        # images and accept=0.95 accept all 9, not 8).
        self.quantiles = np.quantile(scores, QUANTILE_LEVELS, method="lower")
        self.accept = check_accept(accept)
        self.threshold = self.threshold_for(self.accept)
        return self

    def threshold_for(self, accept):
        """The score at the (1 - accept) quantile of the calibration scores, less the rounding tolerance."""
        if self.quantiles is None:
            raise RuntimeError("the detector is not calibrated yet; call calibrate(validation_scores)")
        level = min(1.0 - check_accept(accept), 1.0)
        # the largest stored level not above the target: never accept fewer than asked
        quantile = self.quantiles[int(np.floor(level / QUANTILE_LEVELS[1] + 1e-9))]
        return float(quantile - TOLERANCE * max(1.0, abs(quantile)))

    def is_known(self, scores, accept=None):
        threshold = self.threshold if accept is None else self.threshold_for(accept)
        return np.asarray(scores) >= threshold

    # --- storage -------------------------------------------------------------------------------------
    def get_config(self):
        """JSON-able settings for config.json's "ood" entry (the tensors go to ood.safetensors)."""
        return {"method": self.method, "file": FILE, "accept": self.accept, "threshold": self.threshold,
                "quantile_levels": len(QUANTILE_LEVELS),
                "quantiles": [float(q) for q in self.quantiles], "feature_dim": self.feature_dim,
                "layer_dims": list(self.layer_dims),
                "num_classes": self.num_classes, "sketch_dim": self.sketch_dim, "k": self.k,
                "bank_size": self.bank_size, "seed": self.seed, "sha256": tensors_digest(self.tensors)}

    def get_tensors(self):
        return dict(self.tensors)

    def expected_tensors(self):
        """{name: shape} the stored tensors must have, from the config alone (for load-time checks)."""
        dim = self.sketch_dim or self.feature_dim
        if self.method in ("mahalanobis", "mahalanobis-l2"):
            return {"whiten": (dim, dim), "means": (None, dim)}
        if self.method == "knn":
            return {"bank": (None, dim)}
        if self.taps:
            dims = [dim] + self.layer_dims
            expected = {"centre": (len(dims),), "scale": (len(dims),)}
            for i, d in enumerate(dims):
                expected.update({f"whiten_{i}": (d, d), f"means_{i}": (None, d)})
            return expected
        return {}

    @classmethod
    def from_config(cls, config):
        """A detector from its config.json entry, tensors not yet set (set_tensors); raises ValueError
        naming the bad field."""
        if not isinstance(config, dict):
            raise ValueError(f"'ood' must be an object, got {config!r}")  # noqa: TRY004 - bad file content
        method = config.get("method")
        if method not in METHODS:
            raise ValueError(f"'ood' method must be one of {', '.join(METHODS)}, got {method!r}")
        detector = cls(method, **{key: _int_field(config, key, 1) for key in ("k", "bank_size")},
                       seed=_int_field(config, "seed", 0))
        detector.feature_dim = _int_field(config, "feature_dim", 1)
        detector.num_classes = _int_field(config, "num_classes", 1)
        layer_dims = config.get("layer_dims", [])
        if not isinstance(layer_dims, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in layer_dims):
            raise ValueError(f"'ood' layer_dims must be a list of positive integers, got {layer_dims!r}")
        detector.layer_dims = list(layer_dims) if detector.taps else []
        if config.get("sketch_dim") is not None:
            detector.sketch_dim = _int_field(config, "sketch_dim", 1)
            detector._sketch = _sketch_plan(detector.feature_dim, detector.sketch_dim)
        quantiles = config.get("quantiles")
        if (not isinstance(quantiles, list) or len(quantiles) != len(QUANTILE_LEVELS)
                or not all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in quantiles)):
            raise ValueError(f"'ood' quantiles must be a list of {len(QUANTILE_LEVELS)} numbers")
        detector.quantiles = np.asarray(quantiles, np.float64)
        if not np.all(np.isfinite(detector.quantiles)) or np.any(np.diff(detector.quantiles) < 0):
            raise ValueError("'ood' quantiles must be finite and non-decreasing")
        detector.digest = config.get("sha256")  # None in detectors saved before the digest was added
        if detector.digest is not None and not isinstance(detector.digest, str):
            raise ValueError(f"'ood' sha256 must be a string, got {detector.digest!r}")
        detector.accept = check_accept(config.get("accept"), "'ood' accept")
        detector.threshold = detector.threshold_for(detector.accept)
        return detector

    def set_tensors(self, tensors):
        """The stored tensors, checked against the config (names, dtype, shapes, finite values)."""
        expected = self.expected_tensors()
        if set(tensors) != set(expected):
            raise ValueError(f"tensors {sorted(tensors)} do not match the '{self.method}' detector "
                             f"(expected {sorted(expected)})")
        for name, shape in expected.items():
            value = tensors[name]
            if value.dtype != np.float32 or value.ndim != len(shape) or any(
                    s is not None and s != v for s, v in zip(shape, value.shape)) or value.shape[0] == 0:
                raise ValueError(f"tensor {name!r} has {value.dtype} shape {value.shape}, expected float32 "
                                 f"{tuple('N' if s is None else s for s in shape)}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"tensor {name!r} holds non-finite values")
        if getattr(self, "digest", None) is not None and tensors_digest(tensors) != self.digest:
            raise ValueError("the tensors' SHA-256 does not match config.json's 'ood' entry: the file was "
                             "modified or belongs to another model")
        self.tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        return self

    def __repr__(self):
        return f"<OODDetector method={self.method!r} accept={self.accept} threshold={self.threshold}>"


def tensors_digest(tensors):
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order: any edit changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _int_field(config, key, minimum):
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'ood' {key} must be an integer >= {minimum}, got {value!r}")
    return value


def auroc(known_scores, unknown_scores):
    """Area under the ROC curve for telling known (positive) from unknown by score; ties count half."""
    known = np.asarray(known_scores, np.float64).reshape(-1)
    unknown = np.asarray(unknown_scores, np.float64).reshape(-1)
    _, inverse, counts = np.unique(np.concatenate([known, unknown]), return_inverse=True,
                                   return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based ranks, ties share their mean rank
    ranks = average_rank[inverse.reshape(-1)]
    rank_sum = ranks[:len(known)].sum()
    return float((rank_sum - len(known) * (len(known) + 1) / 2.0) / (len(known) * len(unknown)))


def fpr_at_tpr(known_scores, unknown_scores, tpr=0.95):
    """Fraction of unknown inputs accepted at the highest threshold that accepts at least `tpr` of the known
    ones (the ROC curve's first point with TPR >= tpr)."""
    known = np.sort(np.asarray(known_scores, np.float64).reshape(-1))[::-1]
    threshold = known[max(int(np.ceil(tpr * len(known) - 1e-9)) - 1, 0)]
    return float(np.mean(np.asarray(unknown_scores) >= threshold))
