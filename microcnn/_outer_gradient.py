"""A Dense kernel's gradient kept as its two factors, x^T @ dy, until the optimizer uses it.

For a large kernel (the seed net's is 87616 x 256, 90 MB) writing the gradient out and reading it back costs
more than computing it: Adam applies it with `_core.dense_adam_update`, which computes it block by block in
the same pass that updates the weights and its moments, bit for bit as `dense_backward` + `adam_update`.
Anything else (SGD, `Sequential._gradients`, `np.asarray`) gets the gradient array.
"""

import numpy as np

from . import _core

# Kernels with more weights than this keep their gradient factored (the seed net's at 28x28, 3136 x 256,
# included); smaller ones materialise it at once. dense_adam_update computes the gradient block by block unless
# dense_backward's GEMM would split the batch sum over threads (a long batch for a small kernel: cpp gemm.hpp),
# where it computes it whole as dense_backward does: the same bits either way.
FACTORED_MIN_WEIGHTS = 1 << 16


class OuterGradient:
    """dL/dkernel = x^T @ dy of a Dense layer with input x (N, K) and output gradient dy (N, M)."""

    __slots__ = ("_kernel", "dy", "x")

    def __init__(self, x, dy, kernel):
        self.x = x
        self.dy = dy
        self._kernel = kernel  # only for its shape: dense_backward reads no weight when need_dx=False

    @property
    def shape(self):
        return self._kernel.shape

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("OuterGradient: the gradient array is computed, a copy cannot be avoided")
        _, dw, _ = _core.dense_backward(self.dy, self.x, self._kernel, need_dx=False, need_db=False)
        return dw if dtype is None else dw.astype(dtype, copy=False)
