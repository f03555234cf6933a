"""Plain NumPy (float64) versions of the network's operations: an independent reference for the model-level
tests (finite differences run on these, never on the code under test)."""

import numpy as np


def same_padding(size, window, stride):
    """Keras/TF 'same': total padding max((out-1)*stride + window - size, 0), the smaller half first."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _pad(x, window, strides, padding, value=0.0):
    if padding == "valid":
        return x
    (t, b), (left, r) = same_padding(x.shape[1], window[0], strides[0]), same_padding(x.shape[2], window[1], strides[1])
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=value)


def _out(size, window, stride, padding):
    return -(-size // stride) if padding == "same" else (size - window) // stride + 1


def conv2d(x, w, b=None, strides=(1, 1), padding="valid"):
    """x (N,H,W,C), w (R,S,C,K) -> (N,P,Q,K), as Keras computes it."""
    r_, s_, _, k = w.shape
    sh, sw = strides
    p, q = _out(x.shape[1], r_, sh, padding), _out(x.shape[2], s_, sw, padding)
    xp = _pad(np.asarray(x, np.float64), (r_, s_), strides, padding)
    y = np.zeros((x.shape[0], p, q, k))
    for r in range(r_):
        for s in range(s_):
            y += xp[:, r:r + sh * (p - 1) + 1:sh, s:s + sw * (q - 1) + 1:sw, :] @ w[r, s]
    return y if b is None else y + b


def maxpool2d(x, pool=(2, 2), strides=None, padding="valid"):
    strides = strides or pool
    p, q = _out(x.shape[1], pool[0], strides[0], padding), _out(x.shape[2], pool[1], strides[1], padding)
    xp = _pad(np.asarray(x, np.float64), pool, strides, padding, value=-np.inf)
    y = np.full((x.shape[0], p, q, x.shape[3]), -np.inf)
    for r in range(pool[0]):
        for s in range(pool[1]):
            y = np.maximum(y, xp[:, r:r + strides[0] * (p - 1) + 1:strides[0], s:s + strides[1] * (q - 1) + 1:strides[1]])
    return y


def relu(x):
    return np.maximum(x, 0.0)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(probs, onehot, sample_weight=None):
    """Keras sum-over-batch-size: sum_i w_i * CE_i / N."""
    ce = -np.sum(onehot * np.log(probs), axis=1)
    w = np.ones(len(ce)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return float(np.sum(w * ce) / len(ce))
