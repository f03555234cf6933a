"""Instructions per training step (valgrind's callgrind), and the weights' hash, for one or more installs.

    python benchmarks/step_instructions.py [--python OTHER/bin/python ...] [--size 64] [--steps 3]

A count of executed instructions does not depend on what else the machine is doing, so it tells whether a
change made the step do more work where wall-clock timings on a shared machine cannot. Each interpreter (this
one, and every --python) trains the seed network on one fixed batch (seed 0, 1 thread, AVX2 kernels) under
callgrind twice, with 0 and with --steps timed steps after one warm-up step and one predict; the difference of
the two totals over --steps is the count per step (import and start-up cancel out). The SHA-256 of the weights
after the steps tells whether the installs compute the same bits. Needs valgrind.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import hashlib, sys
import numpy as np
import microcnn
from microcnn import _core
from microcnn.optimizers import Adam
from microcnn.presets import build_model
size, steps = int(sys.argv[1]), int(sys.argv[2])
_core.set_num_threads(1)
microcnn.set_seed(0)
rng = np.random.default_rng(0)
x = rng.random((32, size, size, 3), dtype=np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 32)]
model = build_model("seed", (size, size, 3), 3)
model.compile(optimizer=Adam(learning_rate=4e-4), loss="categorical_crossentropy")
model.train_on_batch(x, y)
model.predict(x, batch_size=32)
for _ in range(steps):
    model.train_on_batch(x, y)
print(hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())).hexdigest())
"""


def count(python, size, steps, workdir):
    out = Path(workdir) / "callgrind.out"
    env = dict(os.environ, OMP_NUM_THREADS="1", MICROCNN_ISA="avx2")
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-c", WORKER,
                          str(size), str(steps)], check=False, capture_output=True, text=True, cwd=workdir, env=env)
    if run.returncode != 0:
        sys.exit(f"{python}: the worker failed:\n{run.stderr[-2000:]}")
    total = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    return int(total.group(1).replace(",", "")), run.stdout.split()[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", default=[], help="another install's interpreter (repeatable)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    print(f"seed network, batch 32, {args.size}x{args.size}x3, 1 thread, AVX2 kernels, {args.steps} steps")
    print(f"{'interpreter':<40} {'instructions/step':>18}  weights SHA-256")
    with tempfile.TemporaryDirectory() as workdir:
        for python in [sys.executable, *args.python]:
            base, _ = count(python, args.size, 0, workdir)
            total, digest = count(python, args.size, args.steps, workdir)
            print(f"{python:<40} {(total - base) / args.steps:>18,.0f}  {digest[:16]}", flush=True)


if __name__ == "__main__":
    main()
