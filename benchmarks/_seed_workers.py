"""Benchmark workers: each runs in its own subprocess (see bench_seed.py) and prints one JSON line.

Every worker trains the seed network (Conv32 3x3 same + ReLU, MaxPool 2, Conv64 2x2 same + ReLU, MaxPool 2,
Flatten, Dense 256 + ReLU, Dropout 0.5, Dense softmax; Adam lr 4e-4; categorical cross-entropy) on one fixed
random batch, timing `steps` training steps after `warmup` untimed ones, then times inference on the same
batch. Times are per step; the parent takes medians. Peak RSS is this process's own ru_maxrss.
"""

import json
import os
import resource
import sys
import time

import numpy as np

LR = 4e-4


def step_arguments(ap, size=150, classes=3, steps=10, warmup=3, rounds=3):
    """The options every seed-network benchmark takes (--threads --batch --size --classes --steps, and
    --warmup / --rounds where given: None leaves one out), with that benchmark's defaults."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=size)
    ap.add_argument("--classes", type=int, default=classes)
    ap.add_argument("--steps", type=int, default=steps, help="timed steps per round")
    if warmup is not None:
        ap.add_argument("--warmup", type=int, default=warmup)
    if rounds is not None:
        ap.add_argument("--rounds", type=int, default=rounds, help="subprocess runs per framework, interleaved")
    return ap


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def batch(args):
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, 3), dtype=np.float32)
    labels = rng.integers(0, args.classes, size=args.batch).astype(np.int32)
    return x, labels, np.eye(args.classes, dtype=np.float32)[labels]


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


# --- microcnn, through the public model ---------------------------------------------------------------
def run_microcnn(args):
    from microcnn import _core

    _core.set_num_threads(args.threads)
    try:
        from microcnn.optimizers import Adam
        from microcnn.presets import build_model
    except ImportError as e:
        return {"error": f"microcnn model API not available ({e})"}
    x, _, onehot = batch(args)
    model = build_model("seed", (args.size, args.size, 3), args.classes)
    model.compile(optimizer=Adam(learning_rate=LR), loss="categorical_crossentropy")
    train = timed(lambda: model.train_on_batch(x, onehot), args.warmup, args.steps)
    infer = timed(lambda: model.predict(x, batch_size=args.batch), args.warmup, args.steps)
    return {
        "train_s": train,
        "infer_s": infer,
        "params": int(model.count_params()),
        "kernel_isa": _core.kernel_isa(),
        "peak_rss_mib": peak_rss_mib(),
    }


# --- microcnn, the same step composed from _core calls (per-kernel times, no Python layer) --------------
def run_microcnn_core(args):
    from microcnn import _core

    _core.set_num_threads(args.threads)
    x, labels, _ = batch(args)
    rng = np.random.default_rng(1)
    n, s = args.batch, args.size
    flat = 64 * (s // 4) * (s // 4)

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    params = {
        "w1": he((3, 3, 3, 32), 27),
        "b1": np.zeros(32, np.float32),
        "w2": he((2, 2, 32, 64), 128),
        "b2": np.zeros(64, np.float32),
        "w3": he((flat, 256), flat),
        "b3": np.zeros(256, np.float32),
        "w4": he((256, args.classes), 256),
        "b4": np.zeros(args.classes, np.float32),
    }
    slots = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    times = {}
    state = {"step": 0}

    def t(name, fn, *a, **kw):
        start = time.perf_counter()
        out = fn(*a, **kw)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return out

    def step(train=True):
        p, c = params, _core
        y1 = t("conv1 fwd", c.conv2d_forward, x, p["w1"], p["b1"], padding="same", relu=True)
        p1, a1 = t("pool1 fwd", c.maxpool2d_forward, y1, 2, 2, 2, 2)
        y2 = t("conv2 fwd", c.conv2d_forward, p1, p["w2"], p["b2"], padding="same", relu=True)
        p2, a2 = t("pool2 fwd", c.maxpool2d_forward, y2, 2, 2, 2, 2)
        f = p2.reshape(n, flat)
        h = t("dense1 fwd", c.dense_forward, f, p["w3"], p["b3"], relu=True)
        if not train:
            return t("dense2 fwd", c.dense_forward, h, p["w4"], p["b4"])
        state["step"] += 1
        d = t("dropout", c.dropout_forward, h, 0.5, 7, state["step"])
        logits = t("dense2 fwd", c.dense_forward, d, p["w4"], p["b4"])
        _, _, dlogits = t("softmax+CE", c.softmax_cross_entropy, logits, labels)
        dd, g4, gb4 = t("dense2 bwd", c.dense_backward, dlogits, d, p["w4"])
        dh = t("dropout", c.dropout_backward, dd, 0.5, 7, state["step"])
        dh = t("relu bwd", c.relu_backward, dh, h)
        # as the Sequential does for a kernel this large: dw stays factored (f, dh) and Adam computes it block
        # by block in its pass over w3 (dense_adam_update below)
        df, _, gb3 = t("dense1 bwd", c.dense_backward, dh, f, p["w3"], need_dw=False)
        dy2 = t("pool2 bwd", c.maxpool2d_backward, df.reshape(p2.shape), a2, y2.shape)
        dy2 = t("relu bwd", c.relu_backward, dy2, y2)
        dp1, g2, gb2 = t("conv2 bwd", c.conv2d_backward, dy2, p1, p["w2"], padding="same")
        dy1 = t("pool1 bwd", c.maxpool2d_backward, dp1, a1, y1.shape)
        dy1 = t("relu bwd", c.relu_backward, dy1, y1)
        _, g1, gb1 = t("conv1 bwd", c.conv2d_backward, dy1, x, p["w1"], padding="same", need_dx=False)
        grads = {"w1": g1, "b1": gb1, "w2": g2, "b2": gb2, "b3": gb3, "w4": g4, "b4": gb4}
        for k, g in grads.items():
            m, v = slots[k]
            t("adam", c.adam_update, p[k], g, m, v, LR, step=state["step"])
        m, v = slots["w3"]
        t("dense1 dw+adam", c.dense_adam_update, p["w3"], f, dh, m, v, LR, step=state["step"])
        return logits

    def train_step():
        before = {k: len(v) for k, v in times.items()}
        step(True)
        # several calls of one kind in a step (relu bwd, adam) count as one entry per step
        for k, v in times.items():
            extra = len(v) - before.get(k, 0)
            if extra > 1:
                v[len(v) - extra :] = [sum(v[len(v) - extra :])]

    train = timed(train_step, args.warmup, args.steps)
    per_kernel = {k: v[args.warmup :] for k, v in times.items()}
    infer = timed(lambda: step(False), args.warmup, args.steps)
    return {
        "train_s": train,
        "infer_s": infer,
        "kernels_s": per_kernel,
        "kernel_isa": _core.kernel_isa(),
        "peak_rss_mib": peak_rss_mib(),
    }


# --- PyTorch (eager, CPU) -----------------------------------------------------------------------------
def run_torch(args):
    try:
        import torch
    except ImportError:
        return {"error": "not installed"}
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    s = args.size
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 2, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (s // 4) * (s // 4), 256),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(256, args.classes),
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()  # softmax folded into the loss, as is idiomatic in PyTorch
    x_np, labels, _ = batch(args)
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def infer_step():
        with torch.no_grad():
            torch.softmax(model(x), dim=1)

    model.train()
    train = timed(train_step, args.warmup, args.steps)
    model.eval()
    infer = timed(infer_step, args.warmup, args.steps)
    return {"train_s": train, "infer_s": infer, "version": torch.__version__, "peak_rss_mib": peak_rss_mib()}


# --- TensorFlow / Keras (only when installed) ---------------------------------------------------------
def run_tensorflow(args):
    try:
        import tensorflow as tf
    except ImportError:
        return {"error": "not installed"}
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    k = tf.keras
    s = args.size
    model = k.Sequential(
        [
            k.Input((s, s, 3)),
            k.layers.Conv2D(32, 3, padding="same", activation="relu"),
            k.layers.MaxPooling2D(2),
            k.layers.Conv2D(64, 2, padding="same", activation="relu"),
            k.layers.MaxPooling2D(2),
            k.layers.Flatten(),
            k.layers.Dense(256, activation="relu"),
            k.layers.Dropout(0.5),
            k.layers.Dense(args.classes, activation="softmax"),
        ]
    )
    model.compile(optimizer=k.optimizers.Adam(learning_rate=LR), loss="categorical_crossentropy")
    x, _, onehot = batch(args)
    train = timed(lambda: model.train_on_batch(x, onehot), args.warmup, args.steps)
    infer = timed(lambda: model.predict_on_batch(x), args.warmup, args.steps)
    return {"train_s": train, "infer_s": infer, "version": tf.__version__, "peak_rss_mib": peak_rss_mib()}


# --- numpy sgemm: the ceiling -------------------------------------------------------------------------
GEMM_SHAPES = {  # the seed net's GEMMs (M, N, K) at batch 32, 150x150
    "square 2048": (2048, 2048, 2048),
    "conv1 fwd": (720000, 32, 27),
    "conv2 fwd": (180000, 64, 128),
    "dense1 fwd": (32, 256, 87616),
}


def run_numpy(args):
    import contextlib

    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:  # the parent also sets OPENBLAS_NUM_THREADS for this worker
        threadpool_info, threadpool_limits = list, (lambda n: contextlib.nullcontext())

    rng = np.random.default_rng(0)
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads")
    out = {"gflops": {}, "blas": [{k: i.get(k) for k in keys} for i in threadpool_info()]}
    with threadpool_limits(args.threads):
        for name, (m, n, k) in GEMM_SHAPES.items():
            a = rng.random((m, k), dtype=np.float32)
            b = rng.random((k, n), dtype=np.float32)
            times = timed(lambda a=a, b=b: a @ b, 2, max(5, args.steps))
            out["gflops"][name] = 2.0 * m * n * k / float(np.median(times)) / 1e9
    return out


WORKERS = {
    "microcnn": run_microcnn,
    "microcnn-core": run_microcnn_core,
    "torch": run_torch,
    "tensorflow": run_tensorflow,
    "numpy": run_numpy,
}


def main(name, args, workers=None):
    """Run one worker (from `workers`, default this file's) and print its RESULT line for the parent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = (workers or WORKERS)[name](args)
    except ImportError as e:
        result = {"skipped": f"not installed ({e.name or e})"}
    except Exception as e:  # noqa: BLE001 - any failure becomes this framework's row in the table
        result = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
