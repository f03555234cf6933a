"""Fuzzing of microcnn._core: random shapes, dtypes, memory layouts, aliasing and overflow-sized sizes, strides,
seeds and hyperparameters for every kernel binding. A case passes when the call returns or raises ValueError,
TypeError, OverflowError or MemoryError; any other exception fails it, and so does any signal (abort,
segfault): the cases run in child processes, several per child.

    python tests/fuzz_core.py --cases 20000             # the long run (about 1 minute per 5000 cases)
    python tests/fuzz_core.py --seed 7 --show 1234      # print the arguments of case 1234 of seed 7

tests/test_fuzz_core.py runs a few hundred cases of it as part of the suite. Case i of seed s is generated from
numpy.random.default_rng([s, i]) alone, so a failure is reproduced by its (seed, case) pair.
"""

import argparse
import os
import subprocess
import sys

import numpy as np

ACCEPTED = (ValueError, TypeError, OverflowError, MemoryError)
BIG_INTS = [-2**63, -2**31, -1, 0, 2**31 - 1, 2**31, 2**32 + 1, 2**61, 2**62, 2**63 - 1, 2**64, 2**70]
ODD_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-45, 1e38, 3.4e38, 1.0, 0.5]
PADDINGS = ["valid", "same", "", "SAME", "full"]
FILL_MODES = ["nearest", "constant", "reflect", "wrap", ""]


class _Gen:
    """Arguments for one case, drawn from one generator."""

    def __init__(self, rng):
        self.rng = rng
        self.clean = rng.random() < 0.4  # well-formed arguments only, so the kernels run (edge sizes included)

    def chance(self, p):
        return self.rng.random() < p

    def small(self, lo=1, hi=6):
        return int(self.rng.integers(lo, hi + 1))

    def size(self, lo=1, hi=6):
        """Mostly a small size, sometimes an overflow-sized or non-positive one."""
        return self.pick(BIG_INTS) if not self.clean and self.chance(0.08) else self.small(lo, hi)

    def real(self, lo=0.0, hi=1.0):
        return self.pick(ODD_FLOATS) if not self.clean and self.chance(0.1) else float(self.rng.uniform(lo, hi))

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def word(self, words):
        return self.pick(words)

    def array(self, shape, dtype=np.float32):
        """An array of `shape`, usually well-formed; sometimes the wrong dtype, byte order, layout, a read-only
        or zero-size array, a different rank, or not an array at all."""
        shape = tuple(min(max(0, s), 64) for s in shape)  # overflow-sized sizes go to the scalar arguments
        a = (self.rng.standard_normal(shape) * self.rng.choice([1.0, 1e30])).astype(dtype) \
            if np.issubdtype(dtype, np.floating) else self.rng.integers(-3, 50, shape).astype(dtype)
        r = 1.0 if self.clean else self.rng.random()
        if r < 0.03:
            return a.astype(np.float64)
        if r < 0.05:
            return a.astype(a.dtype.newbyteorder(">"))
        if r < 0.07 and a.ndim >= 1 and a.shape[-1] > 1:
            return a[..., ::2]  # not contiguous
        if r < 0.09:
            a.flags.writeable = False
            return a
        if r < 0.11:
            return a.reshape(-1)  # wrong rank
        if r < 0.12:
            return self.pick([None, 3, "x", [1.0, 2.0]])
        if r < 0.14 and a.ndim >= 1:
            return np.empty((0,) + a.shape[1:], a.dtype)
        if r < 0.16 and a.dtype == np.float32 and a.size:
            a.reshape(-1)[self.rng.integers(0, a.size)] = self.rng.choice([np.nan, np.inf, -np.inf])
        return a


def _conv(g, name):
    N, H, W, C, K = g.small(1, 3), g.small(1, 9), g.small(1, 9), g.small(1, 5), g.small(1, 5)
    R, S = g.size(1, 4), g.size(1, 4)
    sh, sw, pad = g.size(1, 3), g.size(1, 3), g.word(PADDINGS[:2] if g.clean else PADDINGS)
    x, w = g.array((N, H, W, C)), g.array((R, S, C, K))
    b = None if g.chance(0.3) else g.array((K,))
    if name == "conv2d_forward":
        return (x, w, b, sh, sw, pad), {"relu": g.chance(0.5)}
    if name == "conv2d_relu_maxpool_forward":
        return (x, w, b, sh, sw, pad), {}
    P, Q = max(1, H), max(1, W)
    if pad == "valid" and 1 <= R <= H and 1 <= S <= W and sh >= 1 and sw >= 1:
        P, Q = (H - R) // sh + 1, (W - S) // sw + 1
    elif pad == "same" and sh >= 1 and sw >= 1:
        P, Q = -(-H // sh), -(-W // sw)
    if name == "conv2d_backward":
        dy = g.array((N, P + (g.chance(0.1)), Q, K))
        return (dy, x, w, sh, sw, pad), {"need_dx": g.chance(0.7), "need_db": g.chance(0.7)}
    pooled = (N, max(P // 2, 1), max(Q // 2, 1), K)
    if g.clean:  # the forward's own outputs
        from microcnn import _core

        try:
            y, argmax = _core.conv2d_relu_maxpool_forward(x, w, b, sh, sw, pad)
            return (g.array(y.shape), argmax, y, x, w, sh, sw, pad), {"need_db": g.chance(0.5)}
        except ValueError:
            pass
    argmax = g.array(pooled, np.int32)
    return (g.array(pooled), argmax, g.array(pooled), x, w, sh, sw, pad), {"need_db": g.chance(0.5)}


def _pool(g, name):
    N, H, W, C = g.small(1, 3), g.small(1, 9), g.small(1, 9), g.small(1, 4)
    if name == "maxpool2d_forward":
        return (g.array((N, H, W, C)), g.size(1, 3), g.size(1, 3), g.size(1, 3), g.size(1, 3),
                g.word(PADDINGS)), {}
    if g.clean:  # the forward's own outputs
        from microcnn import _core

        pool, stride = g.small(1, 3), g.small(1, 3)
        try:
            y, argmax = _core.maxpool2d_forward(g.array((N, H, W, C)), pool, pool, stride, stride, g.word(PADDINGS[:2]))
            return (g.array(y.shape), argmax, (N, H, W, C)), {}
        except ValueError:
            pass
    P, Q = g.small(1, 5), g.small(1, 5)
    x_shape = tuple(g.size(1, 9) if g.chance(0.3) else v for v in (N, H, W, C))
    argmax = g.array((N, P, Q, C), np.int32)
    if isinstance(argmax, np.ndarray) and argmax.dtype == np.int32 and argmax.flags.writeable and g.chance(0.2):
        argmax.reshape(-1)[:1] = g.rng.choice([-1, 2**31 - 1, H * W * C])
    return (g.array((N, P, Q, C)), argmax, x_shape), {}


def _elementwise(g, name):
    shape = tuple(g.small(1, 5) for _ in range(g.small(1, 4)))
    if name == "relu_forward":
        return (g.array(shape),), {}
    if name == "relu_backward":
        return (g.array(shape), g.array(shape if g.chance(0.9) else shape[::-1])), {}
    N, M = g.small(1, 6), g.small(1, 6)
    if name == "softmax_forward":
        return (g.array((N, M)),), {}
    if name == "softmax_backward":
        return (g.array((N, M)), g.array((N, M + g.chance(0.1)))), {}
    labels = g.array((N,), np.int32) if g.chance(0.6) else g.array((N, M))
    weights = None if g.chance(0.5) else g.array((N,))
    return (g.array((N, M)), labels, weights), {}


def _dense(g, name):
    N, K, M = g.small(1, 6), g.small(1, 40), g.small(1, 40)
    x, w = g.array((N, K)), g.array((K + g.chance(0.1), M))
    if name == "dense_forward":
        return (x, w, None if g.chance(0.3) else g.array((M,))), {"relu": g.chance(0.5)}
    if name == "dense_backward":
        return (g.array((N, M)), x, w), {"need_dx": g.chance(0.7), "need_db": g.chance(0.7),
                                         "need_dw": g.chance(0.8)}
    if name == "sgemm":
        return (x, w), {}
    param = g.array((K, M))
    m = param if g.chance(0.1) else g.array((K, M))  # aliasing
    return (param, x, g.array((N, M)), m, g.array((K, M)), g.real(0, 1e-2)), \
        {"beta_1": g.real(), "beta_2": g.real(), "epsilon": g.real(0, 1e-6), "step": g.size(1, 100)}


def _optim(g, name):
    shape = tuple(g.small(1, 6) for _ in range(g.small(1, 3)))
    param = g.array(shape)
    grad = param if g.chance(0.1) else g.array(shape)  # aliasing
    if name == "sgd_update":
        velocity = None if g.chance(0.3) else g.array(shape)
        return (param, grad, velocity, g.real(0, 1)), {"momentum": g.real(), "nesterov": g.chance(0.5)}
    m = grad if g.chance(0.1) else g.array(shape)
    return (param, grad, m, g.array(shape), g.real(0, 1e-2)), \
        {"beta_1": g.real(), "beta_2": g.real(), "epsilon": g.real(0, 1e-6), "step": g.size(1, 100)}


def _dropout(g, name):
    shape = tuple(g.small(1, 6) for _ in range(g.small(1, 4)))
    seed = g.size(0, 100) if g.chance(0.9) else g.pick([1.5, "s", None])
    return (g.array(shape), g.real(0, 0.99), seed, g.size(0, 100)), ({"offset": g.size(0, 100)} if g.chance(0.5)
                                                                    else {})


def _misc(g, name):
    N, H, W, C = g.small(1, 3), g.small(1, 9), g.small(1, 9), g.small(1, 4)
    if name == "affine_warp":
        matrices = g.array((N, 2, 3))
        if isinstance(matrices, np.ndarray) and matrices.dtype == np.float32 and matrices.flags.writeable:
            with np.errstate(over="ignore"):
                matrices *= np.float32(g.pick([1.0, 1e6, 1e30]))
        return (g.array((N, H, W, C)), matrices), {"fill_mode": g.word(FILL_MODES), "cval": g.real()}
    if name == "global_avgpool_forward":
        return (g.array((N, H, W, C)),), {}
    if name == "global_avgpool_backward":
        return (g.array((N, C)), tuple(g.size(1, 9) if g.chance(0.3) else v for v in (N, H, W, C))), {}
    x = g.array((N, H, W, C))
    vec = [g.array((C + (g.chance(0.05)),)) for _ in range(4)]
    eps = g.real(0, 1e-3)
    if name == "batchnorm_forward_train":
        return (x, vec[0], vec[1], eps), {}
    if name == "batchnorm_forward_infer":
        return (x, vec[0], vec[1], vec[2], vec[3], eps), {}
    return (g.array((N, H, W, C)), x, vec[0], vec[1], vec[2], eps), {}


def _scalars(g, name):
    if name == "conv2d_output_size":
        return (g.size(1, 20), g.size(1, 5), g.size(1, 4), g.word(PADDINGS)), {}
    if name == "set_num_threads":
        return (g.size(1, 2),), {}
    return (g.word(["generic", "avx2", "avx512", "", "x"]),), {}


FAMILIES = {
    _conv: ["conv2d_forward", "conv2d_backward", "conv2d_relu_maxpool_forward", "conv2d_relu_maxpool_backward",
            "conv2d_relu_maxpool_backward_data"],
    _pool: ["maxpool2d_forward", "maxpool2d_backward"],
    _elementwise: ["relu_forward", "relu_backward", "softmax_forward", "softmax_backward", "softmax_cross_entropy"],
    _dense: ["dense_forward", "dense_backward", "sgemm", "dense_adam_update"],
    _optim: ["sgd_update", "adam_update"],
    _dropout: ["dropout_forward", "dropout_backward"],
    _misc: ["affine_warp", "global_avgpool_forward", "global_avgpool_backward", "batchnorm_forward_train",
            "batchnorm_forward_infer", "batchnorm_backward"],
    _scalars: ["conv2d_output_size", "set_num_threads", "set_kernel_isa"],
}
_MAKERS = [(maker, name) for maker, names in FAMILIES.items() for name in names]


def make_case(seed, index):
    """-> (function name, args, kwargs, use the reference submodule) for case `index` of `seed`."""
    g = _Gen(np.random.default_rng([seed, index]))
    maker, name = _MAKERS[int(g.rng.integers(len(_MAKERS)))]
    args, kwargs = maker(g, name)
    reference = name in ("conv2d_forward", "conv2d_backward", "dense_forward", "dense_backward") and g.chance(0.2)
    return name, args, kwargs, reference


def describe(value):
    if isinstance(value, np.ndarray):
        layout = "" if value.flags.c_contiguous else " non-contiguous"
        layout += "" if value.flags.writeable else " read-only"
        return f"array({value.dtype.str} {value.shape}{layout})"
    return repr(value)


def run_cases(seed, start, count, out=sys.stdout):
    """Runs cases [start, start+count) in this process. Writes 'case i' before each (so a crash names it)
    and 'unexpected i: ...' for an exception outside ACCEPTED. Returns the number of unexpected ones."""
    from microcnn import _core

    threads, isa = _core.get_num_threads(), _core.kernel_isa()
    unexpected = 0
    for i in range(start, start + count):
        name, args, kwargs, reference = make_case(seed, i)
        print(f"case {i}", file=out, flush=True)
        fn = getattr(_core.reference if reference else _core, name)
        try:
            fn(*args, **kwargs)
        except ACCEPTED:
            pass
        except Exception as e:  # noqa: BLE001 - anything else is what we are looking for
            unexpected += 1
            print(f"unexpected {i}: {name}: {type(e).__name__}: {e}", file=out, flush=True)
        finally:
            _core.set_num_threads(threads)
            _core.set_kernel_isa(isa)
    return unexpected


def _limit_memory():
    """Keep a case that allocates a huge output from swapping the machine: cap the address space (not under
    AddressSanitizer, which reserves terabytes of shadow memory)."""
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    import resource

    cap = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def run_batches(seed, cases, per_process=200, start=0):
    """Runs the cases in child processes of `per_process` cases each. -> list of failure descriptions."""
    failures = []
    for first in range(start, start + cases, per_process):
        count = min(per_process, start + cases - first)
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(seed), str(first),
                               str(count)], check=False, capture_output=True, text=True, timeout=600)
        lines = proc.stdout.splitlines()
        failures += [line for line in lines if line.startswith("unexpected")]
        if proc.returncode != 0:
            last = next((line for line in reversed(lines) if line.startswith("case ")), "case ?")
            index = last.split()[1]
            failures.append(f"seed {seed} case {index}: child exited with status {proc.returncode} "
                            f"({'signal ' + str(-proc.returncode) if proc.returncode < 0 else 'error'}); "
                            f"stderr: {proc.stderr.strip()[-500:]}")
            if index != "?" and int(index) + 1 < first + count:  # carry on after the crashing case
                failures += run_batches(seed, first + count - int(index) - 1, per_process, int(index) + 1)
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(description="Fuzz microcnn._core in child processes.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--per-process", type=int, default=250)
    p.add_argument("--show", type=int, default=None, metavar="CASE", help="print one case's arguments and exit")
    p.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _limit_memory()
        run_cases(*args.child)
        return 0
    if args.show is not None:
        name, a, kw, reference = make_case(args.seed, args.show)
        print(("reference." if reference else "") + name + "(" + ", ".join(
            [describe(v) for v in a] + [f"{k}={describe(v)}" for k, v in kw.items()]) + ")")
        return 0
    failures = run_batches(args.seed, args.cases, args.per_process)
    for f in failures:
        print(f)
    print(f"{args.cases} cases, seed {args.seed}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
