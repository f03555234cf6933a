"""Type stubs for microcnn._core, the C++ kernels.

Conventions (see cpp/include/microcnn/*.hpp): float32, C-contiguous, NHWC activations; conv weights HWIO
(R, S, C, K); dense weights (in, out). Legend: N batch, H W input height/width, C in-channels, K out-channels,
R S kernel height/width, P Q output height/width, M classes/units.

Every function checks dtype, ndim, shapes and contiguity and raises TypeError (wrong type/dtype) or ValueError
(wrong shape, size, stride, padding, non-contiguous) naming the argument. Inputs are never modified, except the
parameter/state arrays of the optimizer updates, which are updated in place. The GIL is released while a kernel
runs. Functions return freshly allocated arrays.
"""


import numpy as np
from numpy.typing import NDArray
from typing_extensions import TypeAlias

F32: TypeAlias = NDArray[np.float32]
I32: TypeAlias = NDArray[np.int32]
U16: TypeAlias = NDArray[np.uint16]

__version__: str

# --- threads / build info -------------------------------------------------------------------------------
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def has_openmp() -> bool: ...
def kernel_isa() -> str:
    """The dispatched GEMM micro-kernel, e.g. "avx512", "avx2/fma" or "generic"."""

def available_kernel_isas() -> list[str]:
    """Micro-kernels this build and this CPU can run, "generic" first, best last."""

def set_kernel_isa(name: str) -> None:
    """Force a micro-kernel ("generic", "avx2", "avx512"), like MICROCNN_ISA at import; ValueError when the
    CPU cannot run it. For tests and benchmarks; not while kernels run in other threads."""

# --- GEMM -----------------------------------------------------------------------------------------------
def sgemm(a: F32, b: F32) -> F32:
    """a (M,K) @ b (K,N) -> (M,N); the packed SGEMM every conv and dense layer uses."""

# --- convolution ----------------------------------------------------------------------------------------
def conv2d_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Output length along one axis: valid: (size - kernel) // stride + 1; same: ceil(size / stride)."""

def conv2d_forward(
    x: F32, w: F32, b: F32 | None, stride_h: int = 1, stride_w: int = 1, padding: str = "valid",
    relu: bool = False,
) -> F32:
    """x (N,H,W,C), w (R,S,C,K), b (K,) or None -> y (N,P,Q,K). relu=True applies max(0, .) after the bias.
    padding "same" pads total max((P-1)*stride + R - H, 0) rows, floor(half) top and the rest bottom (Keras/TF)."""

def conv2d_backward(
    dy: F32, x: F32, w: F32, stride_h: int = 1, stride_w: int = 1, padding: str = "valid",
    need_dx: bool = True, need_db: bool = True,
) -> tuple[F32 | None, F32, F32 | None]:
    """dy (N,P,Q,K), x (N,H,W,C), w (R,S,C,K) -> (dx (N,H,W,C) or None, dw (R,S,C,K), db (K,) or None).
    dw and db are summed over the batch."""

def conv2d_relu_maxpool_forward(
    x: F32, w: F32, b: F32 | None, stride_h: int = 1, stride_w: int = 1, padding: str = "valid"
) -> tuple[F32, I32]:
    """conv + ReLU + 2x2 stride-2 "valid" max pool in one pass, without the conv output in memory:
    exactly maxpool2d_forward(conv2d_forward(x, w, b, ..., relu=True), 2, 2, 2, 2) -> (y (N,P//2,Q//2,K),
    argmax (N,P//2,Q//2,K) int32 into the conv output (N,P,Q,K)). Requires P, Q >= 2."""

def conv2d_relu_maxpool_backward(
    dy: F32, argmax: I32, y: F32, x: F32, w: F32, stride_h: int = 1, stride_w: int = 1,
    padding: str = "valid", need_db: bool = True,
) -> tuple[F32, F32 | None]:
    """dy, argmax, y (N,P//2,Q//2,K) from the forward above, x (N,H,W,C), w (R,S,C,K) -> (dw (R,S,C,K),
    db (K,) or None): conv2d_backward's weight gradients for dz = maxpool2d_backward(relu_backward(dy, y),
    argmax, (N,P,Q,K)), without dz in memory. ValueError when an argmax lies outside its own window."""

def conv2d_relu_maxpool_backward_data(
    dy: F32, argmax: I32, y: F32, x: F32, w: F32, stride_h: int = 1, stride_w: int = 1,
    padding: str = "valid", need_db: bool = True,
) -> tuple[F32, F32, F32 | None]:
    """As conv2d_relu_maxpool_backward, with the input gradient: -> (dx (N,H,W,C), dw, db or None), the values
    of conv2d_backward(maxpool2d_backward(relu_backward(dy, y), argmax, (N,P,Q,K)), x, w); that gradient is
    written in one pass (no zero fill, no scatter)."""

# --- pooling --------------------------------------------------------------------------------------------
def maxpool2d_forward(
    x: F32, pool_h: int, pool_w: int, stride_h: int, stride_w: int, padding: str = "valid"
) -> tuple[F32, I32]:
    """x (N,H,W,C) -> (y (N,P,Q,C), argmax (N,P,Q,C) int32). argmax holds, per sample, the flat index
    (h*W + w)*C + c of the chosen input. Ties: the first maximum in row-major window order wins.
    Padded positions ("same") never win."""

def maxpool2d_backward(dy: F32, argmax: I32, x_shape: tuple[int, int, int, int]) -> F32:
    """dy (N,P,Q,C), argmax (N,P,Q,C) -> dx of x_shape (N,H,W,C): each dy goes to its argmax (accumulated
    where windows overlap)."""

# --- activations ----------------------------------------------------------------------------------------
def relu_forward(x: F32) -> F32: ...
def relu_backward(dy: F32, y: F32) -> F32:
    """dy * (y > 0), any shape (y is the ReLU output)."""

def softmax_forward(x: F32) -> F32:
    """x (N,M) -> softmax over the last axis, numerically stable."""

def softmax_backward(dy: F32, y: F32) -> F32:
    """dy (N,M), y = softmax output (N,M) -> dx = y * (dy - sum(dy*y, axis=1))."""

# --- loss -----------------------------------------------------------------------------------------------
def softmax_cross_entropy(
    logits: F32, labels: np.ndarray, sample_weight: F32 | None = None
) -> tuple[float, F32, F32]:
    """logits (N,M); labels int32 (N,) class indices or float32 (N,M) one-hot/probabilities;
    sample_weight (N,) or None. Returns (loss, probs (N,M), dlogits (N,M)) with
    loss = sum_i w_i * CE_i / N (Keras's sum-over-batch-size) and dlogits = w_i * (probs - onehot) / N.
    (For float label rows that do not sum to 1, dlogits = w_i * (sum(t_i) * probs - t_i) / N: the exact
    gradient of loss.) A label outside [0, M) raises ValueError."""

# --- dense ----------------------------------------------------------------------------------------------
def dense_forward(x: F32, w: F32, b: F32 | None, relu: bool = False) -> F32:
    """x (N,K), w (K,M), b (M,) or None -> y (N,M)."""

def dense_backward(
    dy: F32, x: F32, w: F32, need_dx: bool = True, need_db: bool = True, need_dw: bool = True
) -> tuple[F32 | None, F32 | None, F32 | None]:
    """dy (N,M), x (N,K), w (K,M) -> (dx (N,K) or None, dw (K,M) or None, db (M,) or None)."""

GEMM_SPLIT_SUM_MAX_OUTPUT: int
"""Dense kernels with more weights than this get dense_adam_update's block-by-block pass (the GEMM splits a
sum across threads only for smaller outputs); the Dense layer keeps their gradient factored for it."""

# --- dropout --------------------------------------------------------------------------------------------
def dropout_forward(x: F32, rate: float, seed: int, step: int, offset: int = 0) -> F32:
    """Inverted dropout, any shape: element i is kept iff u(seed, step, offset + i) >= rate, kept values
    scaled by 1/(1-rate). u is a counter-based hash (splitmix64) of (seed, step, index): the mask does not
    depend on the thread count. 0 <= rate < 1. seed, step, offset are any integers, taken mod 2**64; offset
    is x's first element's index in the whole batch when x holds only some of its rows."""

def dropout_backward(dy: F32, rate: float, seed: int, step: int, offset: int = 0) -> F32:
    """The same mask (recomputed from seed, step, offset) applied to dy."""

# --- optimizers (in place) ------------------------------------------------------------------------------
def sgd_update(
    param: F32, grad: F32, velocity: F32 | None, learning_rate: float, momentum: float = 0.0,
    nesterov: bool = False,
) -> None:
    """Keras SGD. momentum 0: param -= lr*g. Else v = momentum*v - lr*g; param += v, or with nesterov
    param += momentum*v - lr*g. velocity is required when momentum > 0."""

def adam_update(
    param: F32, grad: F32, m: F32, v: F32, learning_rate: float, beta_1: float = 0.9,
    beta_2: float = 0.999, epsilon: float = 1e-7, step: int = 1,
) -> None:
    """Keras Adam, step t >= 1: alpha = lr*sqrt(1-b2^t)/(1-b1^t); m += (g-m)*(1-b1); v += (g*g-v)*(1-b2);
    param -= alpha*m/(sqrt(v)+epsilon)."""

def dense_adam_update(
    param: F32, x: F32, dy: F32, m: F32, v: F32, learning_rate: float, beta_1: float = 0.9,
    beta_2: float = 0.999, epsilon: float = 1e-7, step: int = 1,
) -> None:
    """param (K,M), x (N,K), dy (N,M): adam_update of the dense kernel param with the gradient x^T dy, the dw of
    dense_backward; param, m and v identical bit for bit to dense_backward + adam_update, but in one pass over
    them without a gradient array (computed block by block)."""

# --- naive references (the test oracle) -----------------------------------------------------------------
class reference:
    """Submodule _core.reference: the naive C++ loops the fast kernels are tested against. Same signatures,
    checks and results (up to float32 rounding order) as the functions of the same name above."""

    conv2d_forward = conv2d_forward
    conv2d_backward = conv2d_backward
    dense_forward = dense_forward
    dense_backward = dense_backward

# --- augmentation ---------------------------------------------------------------------------------------
def affine_warp(x: F32, matrices: F32, fill_mode: str = "nearest", cval: float = 0.0) -> F32:
    """x (N,H,W,C), matrices (N,2,3): for output pixel (row r, col c) sample the input at
    (row, col) = A @ (r, c, 1) with bilinear interpolation; outside the image use fill_mode
    "nearest" (clamp), "constant" (cval) or "reflect". -> (N,H,W,C)."""

def augment_params(seed: int, epoch: int, indices: NDArray[np.int64], height: int, width: int,
                   config: dict) -> tuple[NDArray[np.float64], F32]:
    """indices (N) -> (params (N,12) float64, matrices (N,2,3)): the random draws augment_batch makes for each
    sample (dihedral, flip_h, flip_v, rotation, shear, zx, zy, blur, gamma, contrast, brightness, noise) and
    its sampling matrix. config keys: horizontal_flip, vertical_flip, dihedral, rotation, shear, zoom,
    fill_mode, cval, blur, gamma, contrast, brightness, noise (see cpp/include/microcnn/augment.hpp)."""

def augment_batch(x: F32, seed: int, epoch: int, indices: NDArray[np.int64], config: dict) -> F32:
    """x (N,H,W,C), indices (N) -> (N,H,W,C): geometry, blur, gamma, contrast, brightness and noise, sample n
    drawing from the stream of (seed, epoch, indices[n])."""

# --- normalization --------------------------------------------------------------------------------------
def batchnorm_forward_train(x: F32, gamma: F32, beta: F32, epsilon: float) -> tuple[F32, F32, F32]:
    """x (..., C): statistics over all axes but the last. -> (y, batch_mean (C,), batch_var (C,)) with the
    biased variance (Keras normalises with it and updates moving_variance with it too)."""

def batchnorm_forward_infer(
    x: F32, gamma: F32, beta: F32, moving_mean: F32, moving_var: F32, epsilon: float
) -> F32: ...

def batchnorm_backward(
    dy: F32, x: F32, gamma: F32, batch_mean: F32, batch_var: F32, epsilon: float
) -> tuple[F32, F32, F32]:
    """-> (dx like x, dgamma (C,), dbeta (C,))."""

def global_avgpool_forward(x: F32) -> F32:
    """x (N,H,W,C) -> (N,C)."""

def global_avgpool_backward(dy: F32, x_shape: tuple[int, int, int, int]) -> F32: ...

# --- inference (infer.hpp, bf16.hpp) --------------------------------------------------------------------
def conv2d_relu_maxpool_infer(
    x: F32, w: F32, b: F32 | None, stride_h: int = 1, stride_w: int = 1, padding: str = "valid",
    out: F32 | None = None,
) -> F32:
    """The y of conv2d_relu_maxpool_forward without its argmax (inference) -> (N,P//2,Q//2,K); written into
    out when given (float32, that shape, not overlapping x)."""

def channel_stats(maps: F32) -> F32:
    """maps (N, ..., C) -> (N, 2C): per sample and channel the mean over the other axes, then the standard
    deviation (sums in double)."""

def dense_packed_nr() -> int:
    """The micro-panel width pack_dense packs for (that of the micro-kernel in use)."""

def pack_dense(w: F32) -> F32:
    """w (K,M) -> 1-D float32: w packed once into the GEMM's micro-panels, for dense_forward_infer."""

def dense_forward_infer(
    x: F32, w: F32, b: F32 | None, relu: bool = False, packed: F32 | None = None, packed_nr: int = 0,
    out: F32 | None = None,
) -> F32:
    """x (N,K), w (K,M), b or None -> y (N,M), dense_forward's values; batches of more than 4 rows read
    packed = pack_dense(w) (made for packed_nr = dense_packed_nr()) when given; written into out when given."""

def bf16_kernel() -> str:
    """"avx512_bf16" (vdpbf16ps), "avx2/fma" (bf16 weights widened to float32) or "generic"."""

def pack_bf16(w: F32) -> U16:
    """w (K,M) -> 1-D uint16: the weights rounded to bf16 (nearest even) in the bf16 kernels' packed layout."""

def dense_forward_bf16(x: F32, w: U16, b: F32 | None, units: int, relu: bool = False) -> F32:
    """x (N,K), w = pack_bf16(kernel (K,units)), b (units,) or None -> y (N,units), float32 accumulation."""

def conv2d_relu_maxpool_infer_bf16(
    x: F32, w: U16, b: F32 | None, kernel_h: int, kernel_w: int, filters: int,
    stride_h: int = 1, stride_w: int = 1, padding: str = "valid"
) -> F32:
    """x (N,H,W,C), w = pack_bf16(kernel.reshape(R*S*C, filters)) -> (N,P//2,Q//2,filters); bf16 activations
    too on AVX512_BF16."""

# --- bf16 training (bf16_train.hpp) ---------------------------------------------------------------------------
def round_bf16(x: F32) -> F32:
    """x (any shape) -> a new array: each value rounded to the nearest bf16 (ties to even), as float32."""

def pack_bf16_transposed(w: F32) -> U16:
    """w (K,M) -> pack_bf16(w.T) without the transposed copy."""

def conv2d_forward_bf16(
    x: F32, w: F32, b: F32 | None, stride_h: int = 1, stride_w: int = 1, padding: str = "valid", relu: bool = False
) -> F32:
    """conv2d_forward with x and w rounded to bf16, float32 sums -> (N,P,Q,K)."""

def conv2d_backward_bf16(
    dy: F32, x: F32, w: F32, stride_h: int = 1, stride_w: int = 1, padding: str = "valid", need_dx: bool = True,
    need_db: bool = True
) -> tuple[F32 | None, F32, F32 | None]:
    """conv2d_backward with dy, x and w rounded to bf16 in every product (db sums dy as given)."""
