"""Workers of bench_peers.py: each runs in its own subprocess and prints one JSON line.

The seed network (Conv32 3x3 same + ReLU, MaxPool 2, Conv64 2x2 same + ReLU, MaxPool 2, Flatten, Dense 256 +
ReLU, Dropout 0.5, Dense softmax; Adam lr 4e-4) on one fixed random batch: `train_s` are training-step times,
`infer_s` inference times of the whole batch, `latency_s` inference times of one image. The ONNX Runtime and
OpenVINO workers run the microcnn model's own weights as an ONNX graph (peer_onnx.py) and check that their
probabilities match microcnn's.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _seed_workers import timed

LR = 4e-4


def data(args):
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.size, args.size, args.channels), dtype=np.float32)
    labels = rng.integers(0, args.classes, size=args.batch).astype(np.int32)
    return x, labels, np.eye(args.classes, dtype=np.float32)[labels]


def latency(fn, args):
    """One image at a time: more calls than for batches (each is short)."""
    return timed(fn, args.warmup, args.steps * 4)


def seed_model(args, precision=None):
    from microcnn import _core, set_seed
    from microcnn.optimizers import Adam
    from microcnn.presets import build_model

    _core.set_num_threads(args.threads)
    set_seed(0)
    model = build_model("seed", (args.size, args.size, args.channels), args.classes)
    kwargs = {} if precision is None else {"precision": precision}
    model.compile(optimizer=Adam(learning_rate=LR), loss="categorical_crossentropy", **kwargs)
    return model


# --- microcnn ---------------------------------------------------------------------------------------------
def run_microcnn(args, precision=None):
    x, _, onehot = data(args)
    model = seed_model(args, precision)
    out = {}
    if precision is None:  # bf16 rows are inference only (its training is the f32 row's, on bf16 kernels)
        out["train_s"] = timed(lambda: model.train_on_batch(x, onehot), args.warmup, args.steps)
    out["infer_s"] = timed(lambda: model.predict_on_batch(x), args.warmup, args.steps)
    one = x[:1].copy()
    out["latency_s"] = latency(lambda: model.predict_on_batch(one), args)
    return out


def run_microcnn_bf16(args):
    return run_microcnn(args, precision="bf16")


# --- PyTorch (as installed, or with the allocator tunables: the parent sets the environment) --------------
def run_torch(args):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    s, c = args.size, args.channels
    model = nn.Sequential(
        nn.Conv2d(c, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (s // 4) * (s // 4), 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, args.classes),
    )
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    x_np, labels, _ = data(args)
    x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(labels.astype(np.int64))
    one = x[:1].clone()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    def infer(batch):
        with torch.inference_mode():
            torch.softmax(model(batch), dim=1)

    model.train()
    out = {"train_s": timed(train_step, args.warmup, args.steps)}
    model.eval()
    out["infer_s"] = timed(lambda: infer(x), args.warmup, args.steps)
    out["latency_s"] = latency(lambda: infer(one), args)
    out["version"] = torch.__version__
    return out


# --- TensorFlow / Keras ------------------------------------------------------------------------------------
def run_tensorflow(args):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    k = tf.keras
    s = args.size
    model = k.Sequential([
        k.Input((s, s, args.channels)),
        k.layers.Conv2D(32, 3, padding="same", activation="relu"), k.layers.MaxPooling2D(2),
        k.layers.Conv2D(64, 2, padding="same", activation="relu"), k.layers.MaxPooling2D(2),
        k.layers.Flatten(), k.layers.Dense(256, activation="relu"), k.layers.Dropout(0.5),
        k.layers.Dense(args.classes, activation="softmax"),
    ])
    model.compile(optimizer=k.optimizers.Adam(learning_rate=LR), loss="categorical_crossentropy")
    x, _, onehot = data(args)
    one = x[:1].copy()
    out = {"train_s": timed(lambda: model.train_on_batch(x, onehot), args.warmup, args.steps)}
    out["infer_s"] = timed(lambda: model.predict_on_batch(x), args.warmup, args.steps)
    out["latency_s"] = latency(lambda: model(one, training=False), args)
    out["version"] = tf.__version__
    return out


# --- ONNX Runtime and OpenVINO on the microcnn model exported as an ONNX graph ----------------------------
def _graph_and_reference(args):
    import peer_onnx

    x, _, _ = data(args)
    model = seed_model(args)
    return peer_onnx.seed_graph(model), x, model.predict_on_batch(x)


def _check(probs, reference):
    err = float(np.max(np.abs(np.asarray(probs) - reference)))
    if err > 1e-3:
        raise RuntimeError(f"its probabilities differ from microcnn's by {err:.2e}")
    return err


def run_onnxruntime(args):
    import onnxruntime as ort

    graph, x, reference = _graph_and_reference(args)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    one = x[:1].copy()
    out = {"max_abs_diff": _check(sess.run(None, {name: x})[0], reference)}
    out["infer_s"] = timed(lambda: sess.run(None, {name: x}), args.warmup, args.steps)
    out["latency_s"] = latency(lambda: sess.run(None, {name: one}), args)
    out["version"] = ort.__version__
    return out


def run_openvino(args, precision="f32"):
    import openvino as ov

    graph, x, reference = _graph_and_reference(args)
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise RuntimeError("this CPU has no bf16 support in OpenVINO")
    config = {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": precision,
              "PERFORMANCE_HINT": "LATENCY"}
    ov_model = core.read_model(graph.SerializeToString(), b"")
    compiled = {}
    for n in (args.batch, 1):  # static shapes, one compiled model per batch size (OpenVINO's best case)
        m = ov_model.clone()
        m.reshape([n, args.size, args.size, args.channels])
        compiled[n] = core.compile_model(m, "CPU", config).create_infer_request()
    one = x[:1].copy()
    probs = compiled[args.batch].infer({0: x})[0]
    out = {"max_abs_diff": _check(probs, reference) if precision == "f32" else
           float(np.max(np.abs(probs - reference)))}
    out["infer_s"] = timed(lambda: compiled[args.batch].infer({0: x}), args.warmup, args.steps)
    out["latency_s"] = latency(lambda: compiled[1].infer({0: one}), args)
    out["version"] = ov.get_version().split("-")[0]
    return out


def run_openvino_bf16(args):
    return run_openvino(args, "bf16")


WORKERS = {
    "microcnn": run_microcnn,
    "microcnn-bf16": run_microcnn_bf16,
    "torch": run_torch,
    "torch-tuned": run_torch,
    "tensorflow": run_tensorflow,
    "onnxruntime": run_onnxruntime,
    "openvino": run_openvino,
    "openvino-bf16": run_openvino_bf16,
}


def main(name, args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        result = WORKERS[name](args)
    except ImportError as e:
        result = {"skipped": f"not installed ({e.name or e})"}
    except Exception as e:  # noqa: BLE001 - any failure becomes this framework's row in the table
        result = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
