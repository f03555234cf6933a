"""Plain NumPy float64 references for the microcnn kernels: the independent oracle the tests compare against.

Layouts follow the kernels (and Keras): activations NHWC, conv weights HWIO (R, S, C, K), dense weights
(in, out). Every function takes and returns float64 (int64 for indices) and is written for clarity, not speed.
"""

import numpy as np

# --- convolution geometry ----------------------------------------------------------------------------------


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis (Keras/TF): valid (size-kernel)//stride+1, same ceil(size/stride)."""
    if padding == "same":
        return -(-size // stride)
    if padding == "valid":
        return (size - kernel) // stride + 1
    raise ValueError(f"padding: expected 'valid' or 'same', got {padding!r}")


def same_padding(size, kernel, stride, padding):
    """(before, after) padding along one axis: TF puts the odd extra row/column after the input."""
    if padding == "valid":
        return 0, 0
    out = conv_output_size(size, kernel, stride, padding)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_nhwc(x, kernel_hw, strides, padding, value=0.0):
    (r, s), (sh, sw) = kernel_hw, strides
    top, bottom = same_padding(x.shape[1], r, sh, padding)
    left, right = same_padding(x.shape[2], s, sw, padding)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)
    return xp, (top, left)


def _window(xp, r, s, p, q, sh, sw):
    """The input rows/cols each output position reads at kernel tap (r, s): shape (N, P, Q, C)."""
    return xp[:, r : r + (p - 1) * sh + 1 : sh, s : s + (q - 1) * sw + 1 : sw, :]


# --- convolution ---------------------------------------------------------------------------------------------


def conv2d_forward(x, w, b=None, stride_h=1, stride_w=1, padding="valid", relu=False):
    """x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P,Q,K)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, h, wd, _ = x.shape
    r_, s_, _, k = w.shape
    p = conv_output_size(h, r_, stride_h, padding)
    q = conv_output_size(wd, s_, stride_w, padding)
    xp, _ = _pad_nhwc(x, (r_, s_), (stride_h, stride_w), padding)
    y = np.zeros((n, p, q, k))
    for r in range(r_):
        for s in range(s_):
            y += _window(xp, r, s, p, q, stride_h, stride_w) @ w[r, s]
    if b is not None:
        y += np.asarray(b, np.float64)
    return np.maximum(y, 0.0) if relu else y


def conv2d_backward(dy, x, w, stride_h=1, stride_w=1, padding="valid"):
    """dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> (dx (N,H,W,C), dw (R,S,C,K), db (K,))."""
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    _, h, wd, _ = x.shape
    r_, s_, _, _ = w.shape
    _, p, q, _ = dy.shape
    xp, (top, left) = _pad_nhwc(x, (r_, s_), (stride_h, stride_w), padding)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for r in range(r_):
        for s in range(s_):
            dw[r, s] = np.einsum("npqc,npqk->ck", _window(xp, r, s, p, q, stride_h, stride_w), dy)
            _window(dxp, r, s, p, q, stride_h, stride_w)[...] += dy @ w[r, s].T
    dx = dxp[:, top : top + h, left : left + wd, :]
    return dx, dw, dy.sum(axis=(0, 1, 2))


# --- pooling -------------------------------------------------------------------------------------------------


def maxpool2d_forward(x, pool_h, pool_w, stride_h, stride_w, padding="valid"):
    """x (N,H,W,C) -> (y (N,P,Q,C), argmax (N,P,Q,C)): argmax is the per-sample flat index (h*W+w)*C+c,
    the first maximum in row-major window order; padding (-inf) never wins over a real value."""
    x = np.asarray(x, np.float64)
    n, h, wd, c = x.shape
    p = conv_output_size(h, pool_h, stride_h, padding)
    q = conv_output_size(wd, pool_w, stride_w, padding)
    xp, (top, left) = _pad_nhwc(x, (pool_h, pool_w), (stride_h, stride_w), padding, value=-np.inf)
    y = np.empty((n, p, q, c))
    argmax = np.empty((n, p, q, c), np.int64)
    for i in range(p):
        for j in range(q):
            h0, w0 = i * stride_h, j * stride_w
            win = xp[:, h0 : h0 + pool_h, w0 : w0 + pool_w, :].reshape(n, pool_h * pool_w, c)
            best = np.argmax(win, axis=1)  # first maximum in row-major (r, s) order
            y[:, i, j, :] = np.take_along_axis(win, best[:, None, :], axis=1)[:, 0, :]
            rows = h0 + best // pool_w - top
            cols = w0 + best % pool_w - left
            argmax[:, i, j, :] = (rows * wd + cols) * c + np.arange(c)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape):
    """dy (N,P,Q,C), argmax (N,P,Q,C) -> dx (N,H,W,C), each dy added at its argmax."""
    dy = np.asarray(dy, np.float64)
    n = x_shape[0]
    dx = np.zeros((n, int(np.prod(x_shape[1:]))))
    for i in range(n):
        np.add.at(dx[i], np.asarray(argmax[i]).ravel(), dy[i].ravel())
    return dx.reshape(x_shape)


# --- activations and loss ------------------------------------------------------------------------------------


def relu_forward(x):
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_backward(dy, y):
    return np.asarray(dy, np.float64) * (np.asarray(y) > 0)


def softmax_forward(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(dy, y):
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def one_hot(labels, num_classes):
    return np.eye(num_classes)[np.asarray(labels)]


def cross_entropy(probs, onehot, sample_weight=None):
    """Keras's sum-over-batch-size cross-entropy of probabilities: sum_i w_i * CE_i / N."""
    ce = -np.sum(np.asarray(onehot, np.float64) * np.log(np.asarray(probs, np.float64)), axis=1)
    w = np.ones(len(ce)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return float(np.sum(w * ce) / len(ce))


def softmax_cross_entropy(logits, labels, sample_weight=None):
    """logits (N,M); labels int (N,) or float (N,M) -> (loss, probs, dlogits) with Keras's
    sum-over-batch-size reduction: loss = sum_i w_i CE_i / N, dlogits = w_i (sum_j t_ij p_i - t_i) / N."""
    logits = np.asarray(logits, np.float64)
    n, m = logits.shape
    labels = np.asarray(labels)
    t = one_hot(labels, m) if labels.ndim == 1 else labels.astype(np.float64)
    wts = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(shifted - lse)
    ce = (t * (lse - shifted)).sum(axis=1)
    loss = float((wts * ce).sum() / n)
    dlogits = wts[:, None] * (t.sum(axis=1, keepdims=True) * probs - t) / n
    return loss, probs, dlogits


# --- dense ---------------------------------------------------------------------------------------------------


def dense_forward(x, w, b=None, relu=False):
    """x (N,K), w (K,M), b (M,) or None -> y (N,M)."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return np.maximum(y, 0.0) if relu else y


def dense_backward(dy, x, w):
    """dy (N,M), x (N,K), w (K,M) -> (dx (N,K), dw (K,M), db (M,))."""
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


# --- dropout -------------------------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64_mix(z):
    z = np.asarray(z, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_uniform(seed, step, n):
    """The kernels' counter-based uniforms u_0..u_{n-1} in [0,1) for (seed, step) (see dropout.hpp)."""
    seed_arr = np.array([seed % 2**64], np.uint64)
    step_arr = np.array([step % 2**64], np.uint64)
    key = _splitmix64_mix(_splitmix64_mix(seed_arr + _GOLDEN) ^ step_arr)
    i = np.arange(1, n + 1, dtype=np.uint64)
    bits = _splitmix64_mix(key + i * _GOLDEN) >> np.uint64(40)
    return bits.astype(np.float64) / 2.0**24


def dropout_forward(x, rate, seed, step):
    x = np.asarray(x, np.float64)
    keep = dropout_uniform(seed, step, x.size).reshape(x.shape) >= rate
    return np.where(keep, x / (1.0 - rate), 0.0)


# --- optimizers (return new arrays; Keras 3 formulas) --------------------------------------------------------


def sgd_step(param, grad, velocity, learning_rate, momentum=0.0, nesterov=False):
    """-> (param, velocity) after one Keras SGD step."""
    param, grad = np.asarray(param, np.float64), np.asarray(grad, np.float64)
    if momentum == 0.0:
        return param - learning_rate * grad, velocity
    v = momentum * np.asarray(velocity, np.float64) - learning_rate * grad
    if nesterov:
        return param + momentum * v - learning_rate * grad, v
    return param + v, v


def adam_step(param, grad, m, v, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=1):
    """-> (param, m, v) after one Keras Adam step (t = step >= 1)."""
    param, grad, m, v = (np.asarray(a, np.float64) for a in (param, grad, m, v))
    alpha = learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    m = m + (grad - m) * (1.0 - beta_1)
    v = v + (grad * grad - v) * (1.0 - beta_2)
    return param - alpha * m / (np.sqrt(v) + epsilon), m, v
