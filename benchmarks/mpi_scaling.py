"""Data-parallel training over MPI: (a) a measured 2-process against 1-process run on this machine, and
(b) a model of the step time on 8/32/128 nodes.

    python benchmarks/mpi_scaling.py run DATASET [--image-size 64] [--epochs 2] [--arch seed]
    python benchmarks/mpi_scaling.py model [--image-size 150]

run: microcnn-train with 1 kernel thread, once as one process and once under `mpiexec -n 2`, same seed;
prints the wall time of the training loop, the allreduce time per step, the best epoch and its validation
accuracy, and the largest difference between the saved models' weights; and, as the yardstick of float
rounding, the same difference between 1 process with 1 and with 2 kernel threads (another summation order).

model: measures here the compute per image of `small` (280k parameters at 150x150) relative to the seed net
(22.4M), takes a node's speed on the seed net as given (images/s), and prints the step time
T(N) = compute(N) + allreduce(N) with a ring allreduce (2 (N-1)/N * 4 bytes * parameters / bandwidth +
2 (N-1) * latency) at 10, 25 and 100 Gbit/s, for a global batch of 32 split over N nodes (strong scaling)
and for 32 images per node (weak scaling), and the speed-up in images per second over one node (no overlap
of allreduce with the backward pass assumed).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
LATENCY_S = 20e-6  # per message over TCP on Ethernet (InfiniBand: ~2 us)


def train(n, dataset, out, args, threads=1):
    command = [str(BIN / "microcnn-train"), str(dataset), "--out", str(out), "--epochs", str(args.epochs),
               "--image-size", str(args.image_size), "--arch", args.arch, "--seed", "1", "--threads", str(threads),
               "--overwrite"]
    if n > 1:
        mpiexec = shutil.which("mpiexec", path=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
        command = [mpiexec, *flags, "-n", str(n), *command]
    t0 = time.perf_counter()
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    total = time.perf_counter() - t0
    loop = float(re.search(r"Trained \d+ epoch\(s\) in ([\d.]+) s", text).group(1))
    allreduce = re.search(r"Gradient allreduce: ([\d.]+) ms per step", text)
    saved = re.search(r"Saved the model of epoch (\d+) \(best validation accuracy ([\d.]+)", text)
    return {"loop": loop, "total": total, "allreduce_ms": float(allreduce.group(1)) if allreduce else None,
            "epoch": int(saved.group(1)), "accuracy": float(saved.group(2))}


def run(args):
    from safetensors.numpy import load_file

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"1 process": train(1, args.dataset, Path(tmp) / "one", args),
                "2 processes": train(2, args.dataset, Path(tmp) / "two", args),
                "1 process, 2 threads": train(1, args.dataset, Path(tmp) / "threads", args, threads=2)}
        weights = {name: load_file(Path(tmp) / d / "weights.safetensors")
                   for name, d in zip(runs, ("one", "two", "threads"))}
    for name, r in runs.items():
        extra = f", allreduce {r['allreduce_ms']:.1f} ms per step" if r["allreduce_ms"] is not None else ""
        print(f"{name:<21}: training loop {r['loop']:.1f} s (whole run {r['total']:.1f} s), best epoch "
              f"{r['epoch']} with val accuracy {r['accuracy']:.4f}{extra}")
    one, two = runs["1 process"], runs["2 processes"]
    print(f"wall-time ratio (training loop) 1 / 2 processes: {one['loop'] / two['loop']:.2f}x")
    a = weights["1 process"]
    scale = max(float(np.abs(a[k]).max()) for k in a)
    for name in ("2 processes", "1 process, 2 threads"):
        b = weights[name]
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
        print(f"weights, 1 process vs {name}: largest difference {diff:.2e} (largest weight {scale:.2e})")


def per_sample_seconds(arch, size):
    import microcnn
    from microcnn.cli._training import build_compiled_model

    microcnn._core.set_num_threads(1)
    model = build_compiled_model(arch, (size, size, 3), 10, 4e-4)
    x = np.random.default_rng(0).random((32, size, size, 3), dtype=np.float32)
    y = np.arange(32) % 10
    model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(3):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t0) / 96, model.count_params()


def model(args):
    ratio_t, params = {}, {}
    for arch in ("seed", "small"):
        ratio_t[arch], params[arch] = per_sample_seconds(arch, args.image_size)
    print(f"measured here, 1 thread: seed {ratio_t['seed'] * 1e3:.1f} ms/image, small "
          f"{ratio_t['small'] * 1e3:.1f} ms/image (small / seed = {ratio_t['small'] / ratio_t['seed']:.2f})")
    for node_speed in args.node_seed_images_per_s:
        print(f"\nnode trains the seed net at {node_speed:g} images/s (small: that / "
              f"{ratio_t['small'] / ratio_t['seed']:.2f}); global batch 32 (strong) or 32 per node (weak)")
        print("| net | nodes | Gbit/s | allreduce (ms) | compute, batch 32 on 1 node (ms) | strong: step (ms) | "
              "speed-up | efficiency | weak: speed-up |")
        print("|---|---|---|---|---|---|---|---|---|")
        for arch in ("seed", "small"):
            t_image = ratio_t[arch] / ratio_t["seed"] / node_speed
            for nodes in (8, 32, 128):
                for gbit in (10, 25, 100):
                    comm = 2 * (nodes - 1) / nodes * 4 * params[arch] / (gbit * 1e9 / 8) \
                        + 2 * (nodes - 1) * LATENCY_S
                    one = 32 * t_image
                    strong = max(32 / nodes, 1) * t_image + comm  # past 32 nodes the extra ones idle
                    weak = 32 * t_image + comm
                    print(f"| {arch} ({params[arch] / 1e6:.2f}M) | {nodes} | {gbit} | {comm * 1e3:.1f} | "
                          f"{one * 1e3:.0f} | {strong * 1e3:.1f} | {one / strong:.1f}x | "
                          f"{one / strong / nodes:.0%} | {nodes * one / weak:.1f}x |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("dataset")
    r.add_argument("--image-size", type=int, default=64)
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--arch", default="seed")
    m = sub.add_parser("model")
    m.add_argument("--image-size", type=int, default=150)
    m.add_argument("--node-seed-images-per-s", type=float, nargs="+", default=[550.0, 8800.0],
                   help="training speed of one node on the seed net (550: this 2-vCPU machine idle, "
                        "README Performance; 8800: a node 16 times faster)")
    args = p.parse_args()
    if args.command == "run":
        run(args)
    else:
        model(args)


if __name__ == "__main__":
    main()
