"""Where a small-image training step's time goes: FLOPs, or fixed costs (Python, kernel calls, OpenMP, memory).

    python benchmarks/step_overhead.py [--size 28] [--channels 1] [--batch 32] [--steps 30] [--model-kernels]

Measured in one process, interleaved, medians:
  model step       Sequential.train_on_batch (what fit runs per batch, minus data loading)
  bare step        the same step as a list of _core calls with preallocated inputs (no Python layers)
  kernel sum       the sum of each kernel's own time inside the bare step
  flop floor       the step's GFLOP at the rate numpy's sgemm reaches on a large square product
  call cost        one _core call on a 1-element array (argument checks + pybind11 + GIL release)
  --model-kernels  also: every _core call of the model step itself (the fused kernels fit runs), median
                   time per call, named by the layer it serves
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seed_workers import step_arguments, timed


def median_time(fn, steps, warmup=3):
    return float(np.median(timed(fn, warmup, steps)))


def count_core_calls(fn):
    """How many _core functions one call of fn makes (wrapping the module's functions while it runs)."""
    from microcnn import _core

    names = [n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))]
    saved = {n: getattr(_core, n) for n in names}
    count = [0]

    def wrap(f):
        def counted(*a, **kw):
            count[0] += 1
            return f(*a, **kw)
        return counted

    for n in names:
        setattr(_core, n, wrap(saved[n]))
    try:
        fn()
    finally:
        for n, f in saved.items():
            setattr(_core, n, f)
    return count[0]


# The _core calls of one seed-net train_on_batch, in call order, by the layer they serve (f: forward,
# b: backward).
SEED_STEP_CALLS = {
    "conv2d_relu_maxpool_forward": ["conv1+pool f", "conv2+pool f"],
    "dense_forward": ["dense1 f", "dense2 f"],
    "dropout_forward": ["dropout f"],
    "softmax_cross_entropy": ["softmax+CE"],
    "dense_backward": ["dense2 b", "dense1 b"],
    "dropout_backward": ["dropout b"],
    "relu_backward": ["relu b"],
    "conv2d_relu_maxpool_backward_data": ["conv2+pool b (dx, dw)"],
    "conv2d_relu_maxpool_backward": ["conv1+pool b (dw)"],
    "dense_adam_update": ["dense1 dw+adam"],
}


def model_kernel_times(step, steps, warmup=3):
    """-> (median step seconds, {layer: median seconds per step}) for the _core calls `step` makes, by layer
    (SEED_STEP_CALLS; the calls of any other function summed under its name, e.g. adam_update for every small
    weight), timed around the binding (argument checks included), in the same steps."""
    from microcnn import _core

    names = [n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))]
    saved = {n: getattr(_core, n) for n in names}
    counts, current, times, steps_s = {}, {}, {}, []

    def wrap(name, f):
        def timed_call(*a, **kw):
            k = counts.get(name, 0)
            counts[name] = k + 1
            labels = SEED_STEP_CALLS.get(name, [])
            label = labels[k] if k < len(labels) else name
            t = time.perf_counter()
            result = f(*a, **kw)
            current[label] = current.get(label, 0.0) + time.perf_counter() - t
            return result
        return timed_call

    for n in names:
        setattr(_core, n, wrap(n, saved[n]))
    try:
        for i in range(warmup + steps):
            counts.clear()
            current.clear()
            t = time.perf_counter()
            step()
            t = time.perf_counter() - t
            if i >= warmup:
                steps_s.append(t)
                for label, t in current.items():
                    times.setdefault(label, []).append(t)
    finally:
        for n, f in saved.items():
            setattr(_core, n, f)
    return float(np.median(steps_s)), {label: float(np.median(ts)) for label, ts in times.items()}


def step_gflop(n, s, c, classes):
    """Forward + backward GFLOP of the seed net's conv and dense layers (the first conv needs no dx)."""
    conv1 = 2.0 * n * s * s * 9 * c * 32
    conv2 = 2.0 * n * (s // 2) ** 2 * 4 * 32 * 64
    dense = 2.0 * n * (64 * (s // 4) ** 2 * 256 + 256 * classes)
    return (2 * conv1 + 3 * conv2 + 3 * dense) / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    step_arguments(ap, size=28, classes=10, steps=30, warmup=None, rounds=None)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--model-kernels", action="store_true",
                    help="also time each _core call of the model step")
    args = ap.parse_args(argv)

    import _seed_workers
    import bench_seed

    from microcnn import _core, set_seed
    from microcnn.optimizers import Adam
    from microcnn.presets import build_model

    _core.set_num_threads(args.threads)
    set_seed(0)
    rng = np.random.default_rng(0)
    s, c, n = args.size, args.channels, args.batch
    x = rng.random((n, s, s, c), dtype=np.float32)
    labels = rng.integers(0, args.classes, n)
    model = build_model("seed", (s, s, c), args.classes)
    model.compile(optimizer=Adam(learning_rate=4e-4), loss="sparse_categorical_crossentropy")

    # the bare step of bench_seed's microcnn-core worker, at this size (3 input channels there: pad the input)
    wargs = bench_seed.parse_args(["--batch", str(n), "--size", str(s), "--classes", str(args.classes),
                                   "--steps", str(args.steps), "--warmup", "3"])
    wargs.argv = []
    core = _seed_workers.run_microcnn_core(wargs)
    bare = float(np.median(core["train_s"]))
    kernels = {k: float(np.median(v)) for k, v in core["kernels_s"].items()}

    step = median_time(lambda: model.train_on_batch(x, labels), args.steps)
    calls = count_core_calls(lambda: model.train_on_batch(x, labels))
    tiny = np.zeros(1, np.float32)
    call = median_time(lambda: _core.relu_forward(tiny), 2000)
    a = rng.random((1024, 1024), dtype=np.float32)
    gemm_rate = 2 * 1024**3 / median_time(lambda: a @ a, 10) / 1e9
    gflop = step_gflop(n, s, c, args.classes)

    print(f"seed net {s}x{s}x{c} (bare step: {s}x{s}x3), batch {n}, {args.threads} threads, "
          f"median of {args.steps}; load average {os.getloadavg()[0]:.2f}; kernel_isa={_core.kernel_isa()}")
    print(f"model step (train_on_batch)   {step * 1e3:8.2f} ms   {calls} _core calls")
    print(f"bare _core step               {bare * 1e3:8.2f} ms   -> Python layers/loss/optimizer: "
          f"{(step - bare) * 1e3:.2f} ms")
    ksum = sum(kernels.values())
    print(f"sum of kernel times           {ksum * 1e3:8.2f} ms   -> between kernels (allocations, Python): "
          f"{(bare - ksum) * 1e3:.2f} ms")
    print(f"flop floor ({gflop:.3f} GFLOP at numpy sgemm {gemm_rate:.0f} GFLOP/s) "
          f"{gflop / gemm_rate * 1e3:8.2f} ms")
    print(f"one _core call (1 element)    {call * 1e6:8.2f} us   x {calls} calls = {call * calls * 1e3:.2f} ms")
    for name in sorted(kernels, key=lambda k: -kernels[k]):
        print(f"  {name:16s} {kernels[name] * 1e3:7.3f} ms")
    if args.model_kernels:
        step, per_call = model_kernel_times(lambda: model.train_on_batch(x, labels), args.steps)
        total = sum(per_call.values())
        print(f"model step, per _core call (medians over {args.steps} more steps: step {step * 1e3:.2f} ms, "
              f"kernels {total * 1e3:.2f} ms = {total / step:.0%}):")
        for name in sorted(per_call, key=lambda k: -per_call[k]):
            print(f"  {name:24s} {per_call[name] * 1e3:7.3f} ms  {per_call[name] / step:6.1%}")


if __name__ == "__main__":
    main()
