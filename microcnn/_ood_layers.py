"""The pieces of the open-set detector's "multilayer" method (microcnn/ood.py), after Lee et al. 2018 ("A simple
unified framework for detecting out-of-distribution samples and adversarial attacks"): a Mahalanobis distance
at several depths of the network, not only on the penultimate features.

- `channel_stats(maps)`: each convolution block's output (N, H, W, C) summarised as its per-channel spatial mean
  and standard deviation, (N, 2C): what noise, flat or inverted images change first (a C++ kernel: one pass).
- `ledoit_wolf(centred)`: the Ledoit-Wolf (2004) closed-form shrinkage intensity towards a scaled identity, so
  a covariance of a few hundred images is well conditioned without a hand-set constant.
- `fit_gaussian(f, labels, num_classes)`: class means and one shared, shrunk covariance, as a whitening matrix
  and whitened means (the tensors `ood.OODDetector` stores).
"""

import numpy as np

from . import _core


def matmul(a, b):
    """a (N, K) @ b (K, M) in float32 with microcnn's GEMM (NumPy's threaded BLAS competes with the kernels)."""
    return _core.dense_forward(np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32), None)


def channel_stats(maps):
    """(N, H, W, C) feature maps -> (N, 2C) float32: per-channel spatial means, then standard deviations
    (sqrt(max(E[x^2] - mean^2, 0))), in one pass over the maps with sums in double (`_core.channel_stats`)."""
    return _core.channel_stats(np.ascontiguousarray(maps, np.float32))


def ledoit_wolf(centred):
    """Shrinkage intensity a in [0, 1] of the Ledoit-Wolf estimator (1 - a) S + a (tr S / d) I for the
    centred rows `centred` (N, D), S = centred^T centred / N (the formula scikit-learn's ledoit_wolf uses)."""
    x = np.asarray(centred, np.float64)
    n, d = x.shape
    cov = matmul(x.T, x).astype(np.float64) / n
    mu = np.trace(cov) / d
    delta = np.sum((cov - mu * np.eye(d)) ** 2) / d
    if delta <= 0.0:
        return 1.0
    x2 = x * x
    beta = (np.sum(matmul(x2.T, x2).astype(np.float64)) / n - np.sum(cov ** 2)) / (d * n)
    return float(min(max(beta, 0.0), delta) / delta)


def shrunk_covariance(centred):
    """The Ledoit-Wolf covariance of centred rows (N, D), float64 (D, D)."""
    x = np.asarray(centred, np.float32)
    cov = matmul(x.T, x).astype(np.float64) / len(x)
    mu = max(np.trace(cov) / len(cov), 1e-12)
    alpha = max(ledoit_wolf(x), 1e-6)  # never singular (dead units have zero variance)
    return (1.0 - alpha) * cov + alpha * mu * np.eye(len(cov))


def fit_gaussian(f, labels, num_classes, covariance=shrunk_covariance):
    """Class means and a shared covariance of features f (N, D) -> {"whiten", "means"} float32 tensors with
    |f @ whiten - means[c]|^2 the squared Mahalanobis distance to class c (classes without rows left out)."""
    f = np.asarray(f, np.float64)
    means = np.zeros((num_classes, f.shape[1]))
    centred = np.empty_like(f)
    present = np.zeros(num_classes, bool)
    for c in np.unique(labels):
        rows = labels == c
        means[c] = f[rows].mean(axis=0)
        centred[rows] = f[rows] - means[c]
        present[c] = True
    cov = covariance(centred)
    # cov = L L^T; z = f L^-T gives |z - m|^2 = (f - mu)^T cov^-1 (f - mu). (4x faster than eigh here.)
    whiten = np.linalg.inv(np.linalg.cholesky(cov)).T
    return {"whiten": np.ascontiguousarray(whiten, np.float32),
            "means": np.ascontiguousarray(means[present] @ whiten, np.float32)}


def mahalanobis_score(f, whiten, means):
    """Minus the Mahalanobis distance of each row of f to the nearest class mean, float64 (N,)."""
    z = matmul(f, whiten)
    d2 = (np.sum(z.astype(np.float64) ** 2, axis=1, keepdims=True) - 2.0 * matmul(z, means.T)
          + np.sum(means.astype(np.float64) ** 2, axis=1)[None, :])
    return -np.sqrt(np.maximum(np.min(d2, axis=1), 0.0))


def robust_normalisation(layer_scores):
    """(N, L) per-layer scores of known images -> (centre, scale) float32 (L,): median and 1.4826 * MAD, so a
    known image scores about N(0, 1) at every layer and the layers can be compared."""
    s = np.asarray(layer_scores, np.float64)
    centre = np.median(s, axis=0)
    scale = 1.4826 * np.median(np.abs(s - centre), axis=0)
    scale = np.maximum(scale, 1e-6 * np.maximum(np.abs(centre), 1.0))
    return centre.astype(np.float32), scale.astype(np.float32)
