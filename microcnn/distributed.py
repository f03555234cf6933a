"""Data-parallel runs over MPI (`mpiexec -n N ...`, `srun ...`), through mpi4py, imported only when the
process was started by an MPI launcher.

One code path for 1 and N processes. Every global batch (of `batch_size` rows, the same on every rank, drawn
from the same seeded permutation) is cut into N contiguous chunks, rank r taking rows
[B*r//N, B*(r+1)//N): `chunk(n)`. Each rank runs forward/backward on its chunk; the gradients, scaled by
the chunk's share of the batch, are summed with allreduce in buckets of BUCKET_BYTES, and every rank applies
the same update. Randomness is drawn for the whole global batch on every rank (shuffling, the augmentation
transforms) or keyed by the global row (dropout's counter-based mask, with the chunk's row offset), so N
processes follow 1 process up to float rounding.

Environment: MICROCNN_MPI=0 turns the detection off (each process then runs on its own).
"""

import os
import sys

import numpy as np

# Variables set by launchers: Open MPI, MPICH/Intel MPI (Hydra, PMI), PMIx (Open MPI 5, srun --mpi=pmix).
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
BUCKET_BYTES = 4 << 20  # ~4 MB per allreduce: large enough for bandwidth, small enough to pipeline

_world = None
_detected = False


def launched_by_mpi():
    if os.environ.get("MICROCNN_MPI", "").strip() == "0":
        return False
    if any(v in os.environ for v in _LAUNCHER_VARS):
        return True
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ


class World:
    """The MPI communicator and the collectives training and prediction use."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.allreduce_seconds = 0.0  # time spent waiting for the gradient sums after the backward pass
        self.allreduce_calls = 0

    def chunk(self, n):
        """(lo, hi): this rank's rows of a global batch of n rows."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def barrier(self):
        self.comm.Barrier()

    def gather(self, obj):
        return self.comm.gather(obj, root=0)

    def sum_scalars(self, values):
        """Elementwise sum over ranks of a short float64 vector."""
        from mpi4py import MPI

        out = np.empty(len(values), np.float64)
        self.comm.Allreduce(np.asarray(values, np.float64), out, op=MPI.SUM)
        return out

    def reducer(self):
        """A GradientSum for one step."""
        return GradientSum(self)

    def abort(self, code=1):
        self.comm.Abort(code)


class GradientSum:
    """Sums float32 arrays over ranks in place, in buckets of BUCKET_BYTES: `add` starts a bucket's
    MPI_Iallreduce as soon as it is full (during the backward pass, while the next layers' gradients are
    computed; `progress` lets MPI move it on between layers), and `finish` sends the rest with a float64
    vector of totals and waits. Every rank must add arrays of the same sizes in the same order."""

    def __init__(self, world):
        self.world = world
        self.pending, self.size = [], 0
        self.started = []  # (arrays, flat buffer, request)
        self.wait_seconds = 0.0

    def add(self, arrays):
        for a in arrays:
            self.pending.append(a)
            self.size += a.nbytes
            if self.size >= BUCKET_BYTES:
                self._start()

    def _start(self):
        from mpi4py import MPI

        group, self.pending, self.size = self.pending, [], 0
        if not group:
            return
        flat = np.concatenate([a.reshape(-1) for a in group]) if len(group) > 1 else group[0].reshape(-1)
        flat = np.ascontiguousarray(flat, np.float32)
        self.started.append((group, flat, self.world.comm.Iallreduce(MPI.IN_PLACE, flat, op=MPI.SUM)))

    def progress(self):
        from mpi4py import MPI

        if self.started:
            MPI.Request.Testall([r for _, _, r in self.started])

    def finish(self, extra=()):
        """Waits for every sum (arrays updated in place); returns the sum of `extra` over ranks."""
        import time

        from mpi4py import MPI

        t0 = time.perf_counter()
        self._start()
        extra_out = np.empty(len(extra), np.float64)
        requests = [r for _, _, r in self.started]
        requests.append(self.world.comm.Iallreduce(np.asarray(extra, np.float64), extra_out, op=MPI.SUM))
        MPI.Request.Waitall(requests)
        for group, flat, _ in self.started:
            start = 0
            for a in group:
                if not np.shares_memory(a, flat):
                    a.reshape(-1)[...] = flat[start:start + a.size]
                start += a.size
        self.wait_seconds = time.perf_counter() - t0
        self.world.allreduce_seconds += self.wait_seconds
        self.world.allreduce_calls += 1
        return extra_out


def world():
    """The World when this process runs under MPI with more than one process, else None."""
    global _world, _detected
    if not _detected:
        _detected = True
        if launched_by_mpi():
            try:
                from mpi4py import MPI
            except ImportError:
                raise RuntimeError("started by an MPI launcher, but mpi4py is not installed: "
                                   "pip install 'microcnn[mpi]' (or run without mpiexec)") from None
            if MPI.COMM_WORLD.Get_size() > 1:
                _world = World(MPI.COMM_WORLD)
    return _world


def is_root():
    """True on rank 0, and in a run without MPI: the process that prints and writes files."""
    try:
        w = world()
    except RuntimeError:  # launched by MPI without mpi4py: the error is reported elsewhere
        return True
    return w is None or w.rank == 0


def quiet_other_ranks():
    """On ranks other than 0, send stdout to the null device: only rank 0 prints (errors still reach
    stderr, prefixed with the rank by `error_prefix`)."""
    if not is_root():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def error_prefix():
    w = world() if _detected else None
    return "" if w is None else f"rank {w.rank} of {w.size}: "


def abort_on_error(code=1):
    """After an error on one rank, stop every rank (the others would wait for it in a collective)."""
    w = world() if _detected else None
    if w is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        w.abort(code)
