"""Seed-network speed against the best-configured peers, same machine, same run.

    python benchmarks/bench_peers.py [--sizes 28x1,64x3,150x3] [--threads 2] [--steps 6] [--rounds 3]
                                     [--frameworks microcnn,torch,...] [--markdown]

Rows: microcnn (f32, and bf16 inference where the CPU has AVX512_BF16), PyTorch as installed and "tuned" (glibc's
allocator told to keep its large blocks: the setting jemalloc/tcmalloc users get, and the one microcnn makes for
itself), Keras/TF, ONNX Runtime and OpenVINO f32 / bf16 (running microcnn's own model as an ONNX graph; their
probabilities are checked against microcnn's). Every peer but "PyTorch as installed" runs with the allocator
tunables. A peer that is not installed is skipped. Each worker is a subprocess; the rounds interleave the
workers, and a figure is the median over all timed steps of all rounds. Batch figures are img/s of a batch of
--batch (training step, inference); latency is the median time to classify one image (batch 1).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from _seed_workers import step_arguments
from bench_seed import cpu_model

HERE = Path(__file__).resolve().parent
TUNABLES = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=2147483647"
FRAMEWORKS = ["microcnn", "microcnn-bf16", "torch", "torch-tuned", "tensorflow", "onnxruntime", "openvino",
              "openvino-bf16"]
LABELS = {
    "microcnn": "microcnn f32",
    "microcnn-bf16": "microcnn bf16",
    "torch": "PyTorch as installed",
    "torch-tuned": "PyTorch tuned",
    "tensorflow": "Keras/TF",
    "onnxruntime": "ONNX Runtime",
    "openvino": "OpenVINO f32",
    "openvino-bf16": "OpenVINO bf16",
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="28x1,64x3,150x3", help="comma-separated SIDExCHANNELS")
    step_arguments(ap, classes=10, steps=6, warmup=2)  # --steps: x4 for batch-1 latency; --size: set per worker
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    ap.add_argument("--json", help="write the raw per-step times here")
    # set for the workers by main(): one size at a time
    ap.add_argument("--channels", type=int, default=3, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def worker_argv(args, size, channels):
    return ["--threads", str(args.threads), "--batch", str(args.batch), "--classes", str(args.classes),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--size", str(size),
            "--channels", str(channels)]


def run_worker(name, argv, threads):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # microcnn's default; the same for every framework
    if name == "torch":
        env.pop("GLIBC_TUNABLES", None)
    else:
        env["GLIBC_TUNABLES"] = TUNABLES
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _peer_workers as w, bench_peers as b; "
            "w.main(sys.argv[2], b.parse_args(sys.argv[3:]))")
    # cwd=HERE: from the repository root the source tree's microcnn/ would shadow the installed package.
    proc = subprocess.run([sys.executable, "-c", code, str(HERE), name, *argv], env=env, capture_output=True,
                          text=True, check=False, cwd=HERE)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited {proc.returncode}: {tail}"}


def merge(rounds):
    ok = [r for r in rounds if "error" not in r and "skipped" not in r]
    if not ok:
        return rounds[-1]
    out = dict(ok[-1])
    for key in ("train_s", "infer_s", "latency_s"):
        if key in out:
            out[key] = [t for r in ok for t in r[key]]
    return out


def figures(r, batch):
    """(train img/s, infer img/s, latency ms) or None for what the worker did not measure."""
    med = {k: float(np.median(r[k])) for k in ("train_s", "infer_s", "latency_s") if k in r}
    return (batch / med["train_s"] if "train_s" in med else None,
            batch / med["infer_s"] if "infer_s" in med else None,
            1e3 * med["latency_s"] if "latency_s" in med else None)


def main(argv=None):
    args = parse_args(argv)
    names = [n for n in args.frameworks.split(",") if n]
    unknown = set(names) - set(LABELS)
    if unknown:
        raise SystemExit(f"--frameworks: unknown {', '.join(sorted(unknown))}; choose from {', '.join(LABELS)}")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    load = os.getloadavg()
    results = {}
    for size, channels in sizes:
        argv_w = worker_argv(args, size, channels)
        raw = {n: [] for n in names}
        for _ in range(args.rounds):
            for n in names:
                if raw[n] and "skipped" in raw[n][-1]:
                    continue  # not installed: once is enough
                raw[n].append(run_worker(n, argv_w, args.threads))
        results[f"{size}x{size}x{channels}"] = {n: merge(r) for n, r in raw.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    report(args, results, load, os.getloadavg())


def report(args, results, load_before, load_after):
    from microcnn import __version__, _core

    print(f"seed network, batch {args.batch} (latency: batch 1), {args.classes} classes, {args.threads} threads; "
          f"median of {args.rounds} interleaved rounds x {args.steps} timed steps ({4 * args.steps} for latency)")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); microcnn {__version__} "
          f"kernel_isa={_core.kernel_isa()}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    rows = []
    for shape, res in results.items():
        ref = figures(res["torch-tuned"], args.batch) if "train_s" in res.get("torch-tuned", {}) else None
        for n, r in res.items():
            label = LABELS[n] + (f" {r['version']}" if "version" in r else "")
            if "error" in r or "skipped" in r:
                rows.append((shape, label, r.get("error") or r["skipped"]))
                continue
            tr, inf, lat = figures(r, args.batch)
            rel = ("-", "-")
            if ref:
                rel = (f"{tr / ref[0]:.2f}x" if tr else "-", f"{inf / ref[1]:.2f}x" if inf else "-")
            rows.append((shape, label, tr, inf, lat, *rel))
    head = ("input", "framework", "train img/s", "infer img/s", "batch-1 ms", "train/tuned torch",
            "infer/tuned torch")
    print()
    print(f"{head[0]:10s} {head[1]:30s} {head[2]:>11s} {head[3]:>11s} {head[4]:>10s} {head[5]:>17s} {head[6]:>17s}")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    for row in rows:
        if len(row) == 3:
            print(f"{row[0]:10s} {row[1]:30s} {row[2]}")
            continue
        print(f"{row[0]:10s} {row[1]:30s} {fmt(row[2], '11.0f')} {fmt(row[3], '11.0f')} {fmt(row[4], '10.2f')} "
              f"{row[5]:>17s} {row[6]:>17s}")
    if args.markdown:
        print()
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            if len(row) == 3:
                continue
            print(f"| {row[0]} | {row[1]} | {fmt(row[2], '.0f')} | {fmt(row[3], '.0f')} | {fmt(row[4], '.2f')} "
                  f"| {row[5]} | {row[6]} |")


if __name__ == "__main__":
    main()
