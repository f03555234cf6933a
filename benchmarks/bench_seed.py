"""Seed-network speed: microcnn vs PyTorch (and TensorFlow when installed), same machine, same run.

    python benchmarks/bench_seed.py [--threads 2] [--steps 10] [--warmup 3] [--rounds 3]

Each framework runs in its own subprocess (so each peak RSS is its own), --rounds times, interleaved; a
figure is the median over all timed steps of all rounds. The numpy sgemm subprocess runs without
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE so OpenBLAS picks its best kernel for this CPU (the kernel is reported).
Per-layer GFLOP/s come from the microcnn-core run (the same step composed from _core calls, timed per kernel).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
from _seed_workers import step_arguments

HERE = Path(__file__).resolve().parent
FRAMEWORKS = ["microcnn", "microcnn-core", "torch", "tensorflow"]
LABELS = {
    "microcnn": "microcnn Sequential",
    "microcnn-core": "microcnn bare _core step",
    "torch": "PyTorch eager",
    "tensorflow": "TensorFlow/Keras",
}


def layer_gflop(batch, size, classes):
    """GFLOP (2 per multiply-add) of each conv/dense kernel of the seed net, from its GEMM shape."""
    p1, p2 = size, size // 2
    flat = 64 * (size // 4) ** 2
    conv1 = 2.0 * batch * p1 * p1 * 27 * 32 / 1e9
    conv2 = 2.0 * batch * p2 * p2 * 128 * 64 / 1e9
    dense1 = 2.0 * batch * flat * 256 / 1e9
    dense2 = 2.0 * batch * 256 * classes / 1e9
    return {
        "conv1 fwd": conv1,
        "conv1 bwd": conv1,
        "conv2 fwd": conv2,
        "conv2 bwd": 2 * conv2,
        "dense1 fwd": dense1,
        "dense1 bwd": dense1,  # dx only: dw is computed inside "dense1 dw+adam", a memory-bound pass (no GFLOP/s)
        "dense2 fwd": dense2,
        "dense2 bwd": 2 * dense2,
    }


def run_worker(name, args):
    env = dict(os.environ)
    if name == "numpy":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
        env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    # microcnn defaults to passive OpenMP waiting (see microcnn/__init__.py); give every framework the same
    # policy so that, on a machine with other load, the comparison is not about spin-waiting.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _seed_workers as w, bench_seed as b; "
        "w.main(sys.argv[2], b.parse_args(sys.argv[3:]))"
    )
    cmd = [sys.executable, "-c", code, str(HERE), name, *args.argv]
    # cwd=HERE: `python -c` puts the working directory first on sys.path, and from the repository root the
    # source tree's microcnn/ (which has no compiled _core) would shadow the installed package.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=HERE)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited {proc.returncode}: {tail}"}


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    ap = step_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return args


def merge(rounds):
    """Concatenate the per-step lists of several rounds of one worker; keep the max peak RSS."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return rounds[-1]
    out = dict(ok[-1])
    for key in ("train_s", "infer_s"):
        if key in out:
            out[key] = [t for r in ok for t in r[key]]
    if "kernels_s" in out:
        out["kernels_s"] = {
            k: [t for r in ok for t in r["kernels_s"].get(k, [])] for k in ok[-1]["kernels_s"]
        }
    if "peak_rss_mib" in out:
        out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
    out["rounds"] = len(ok)
    return out


def main(argv=None):
    args = parse_args(argv)
    names = [n for n in args.frameworks.split(",") if n]
    raw = {n: [] for n in names + ["numpy"]}
    for _ in range(args.rounds):
        for n in names + ["numpy"]:
            raw[n].append(run_worker(n, args))
    res = {n: merge(r) for n, r in raw.items()}
    report(args, res)


def img_s(batch, times):
    return batch / float(np.median(times))


def report(args, res):
    from microcnn import __version__, _core

    npy = res["numpy"]
    print(
        f"seed network, batch {args.batch}, {args.size}x{args.size}x3, {args.classes} classes, "
        f"{args.threads} threads; median of {args.rounds} rounds x {args.steps} timed steps "
        f"(after {args.warmup} warm-up); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')} for all"
    )
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); microcnn {__version__} kernel_isa={_core.kernel_isa()}"
    )
    if "error" not in npy:
        blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in npy["blas"])
        blas = blas or "BLAS unknown (install threadpoolctl to see which)"
        print(f"numpy {np.__version__} sgemm: {blas}")
    torch = res.get("torch", {})
    ref_train = img_s(args.batch, torch["train_s"]) if "train_s" in torch else None
    ref_infer = img_s(args.batch, torch["infer_s"]) if "infer_s" in torch else None
    print()
    print(
        f"{'framework':28s} {'train img/s':>11s} {'infer img/s':>11s} {'train/torch':>11s} "
        f"{'infer/torch':>11s} {'peak RSS MiB':>12s}"
    )
    for n, r in res.items():
        if n == "numpy":
            continue
        label = LABELS[n] + (f" {r['version']}" if "version" in r else "")
        if "error" in r:
            print(f"{label:28s} {r['error']}")
            continue
        tr, inf = img_s(args.batch, r["train_s"]), img_s(args.batch, r["infer_s"])
        rt = f"{tr / ref_train:.2f}x" if ref_train else "-"
        ri = f"{inf / ref_infer:.2f}x" if ref_infer else "-"
        print(f"{label:28s} {tr:11.1f} {inf:11.1f} {rt:>11s} {ri:>11s} {r['peak_rss_mib']:12.0f}")
    core = res.get("microcnn-core", {})
    if "kernels_s" not in core:
        return
    print()
    ceiling = npy.get("gflops", {}).get("square 2048")
    print(
        "microcnn kernels (bare _core step, wall ms per step)  ceiling: numpy sgemm 2048^3 = "
        + (f"{ceiling:.1f} GFLOP/s" if ceiling else "n/a")
    )
    print(f"{'kernel':14s} {'ms':>8s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'% numpy':>8s} {'numpy same GEMM':>16s}")
    flops = layer_gflop(args.batch, args.size, args.classes)
    total = 0.0
    ks = core["kernels_s"]
    for name in sorted(ks, key=lambda k: -float(np.median(ks[k]))):
        ms = float(np.median(ks[name])) * 1e3
        total += ms
        if name in flops:
            g = flops[name] / (ms / 1e3)
            pct = f"{100 * g / ceiling:.0f}%" if ceiling else "-"
            same = npy.get("gflops", {}).get(name)
            same_s = f"{same:.1f}" if same else ""
            print(f"{name:14s} {ms:8.2f} {flops[name]:7.3f} {g:8.1f} {pct:>8s} {same_s:>16s}".rstrip())
        else:
            print(f"{name:14s} {ms:8.2f}")
    gemm_ms = sum(float(np.median(ks[k])) * 1e3 for k in ks if k in flops)
    gemm_gflop = sum(flops[k] for k in ks if k in flops)
    print(
        f"{'sum':14s} {total:8.2f}   (conv+dense: {gemm_gflop:.2f} GFLOP in {gemm_ms:.1f} ms = "
        f"{gemm_gflop / gemm_ms * 1e3:.1f} GFLOP/s"
        + (f", {100 * gemm_gflop / gemm_ms * 1e3 / ceiling:.0f}% of numpy)" if ceiling else ")")
    )


if __name__ == "__main__":
    main()
