"""One training step of a Sequential on one rank of an MPI run (see microcnn/distributed.py).

Each rank holds its contiguous chunk of the global batch. The loss kernel averages over the rows it sees,
so a rank's gradient times its row count is the sum of its rows' (weighted) gradients; those sums, plus
(loss sum, correct, rows, stop flag), are summed over ranks with bucketed allreduces, each bucket started as
soon as the backward pass (run one plan step at a time, last first) has filled it, and divided by the
global row count: the gradient of the global batch's mean loss, as one process computes it (up to float
rounding: the sum is taken in another order). Under MPI the model runs the plan without the fused dense+Adam
update (`fuse_dense_update = False`), so a large Dense kernel's gradient is an array that can be summed first.

BatchNormalization normalises with the statistics of the rank's own rows (as PyTorch's DistributedDataParallel
does without SyncBatchNorm): with BN layers, N processes do not follow 1 process exactly. Their moving
statistics are averaged over ranks after every step, so every rank (and the saved model) holds the same.
"""

import signal
import threading

import numpy as np

from .layers.core import Dropout

_stop_requested = []


def _request_stop(signum, frame):
    _stop_requested.append(signum)


class stop_on_signal:
    """While fit runs under MPI, SIGINT, SIGTERM and SIGUSR1 only set a flag; the flag travels with the
    next gradient allreduce, and every rank raises KeyboardInterrupt after the same step. So all ranks stop
    together with the same weights, and rank 0 can save a checkpoint. (Open MPI's mpiexec forwards SIGUSR1
    and leaves the ranks running; on Ctrl-C it kills them about 0.2 s after SIGTERM. Slurm sends SIGTERM
    and waits KillWait, 30 s by default, before SIGKILL.)"""

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
                if sig is None:
                    continue
                self.previous[sig] = signal.signal(sig, _request_stop)
        _stop_requested.clear()
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        _stop_requested.clear()


def synchronize(model, world):
    """Give every rank rank 0's weights, layer state, optimizer state and global random state, so ranks
    that were built or seeded differently start the same."""
    from . import _seeding

    # Every gradient as an array (no dense+Adam fusion) so it can be summed over ranks before the update;
    # the weights are the same bit for bit (microcnn/plan.py).
    model.fuse_dense_update = False
    state = world.bcast((model.get_weights(), model.training_state(),
                         model.optimizer.get_state() if model.optimizer is not None else None,
                         _seeding.global_rng().bit_generator.state) if world.rank == 0 else None)
    if world.rank != 0:
        weights, training_state, optimizer_state, rng_state = state
        model.set_weights(weights)
        model.set_training_state(training_state)
        if optimizer_state is not None:
            model.optimizer.set_state(optimizer_state)
        _seeding.global_rng().bit_generator.state = rng_state


def batch_step(model, world, x, y, sample_weight, class_weight, training, atomic_update):
    """(loss, correct, rows) of one step. Training: the global batch's values, after the update every rank
    applied inside `atomic_update()` (the context that holds Ctrl-C off). Inference: this rank's own values
    (the epoch's totals are summed by `reduce_totals`)."""
    n_local = len(x)
    offset = world.comm.exscan(n_local) if training else 0
    offset = offset or 0  # rank 0 gets None
    loss, correct = 0.0, 0
    trainable = [(key, layer, w) for key, layer, w in model.weight_entries() if w in layer.trainable_weight_names]
    grads, reducer = {}, world.reducer() if training else None
    if n_local:
        for layer in model._layers:
            if isinstance(layer, Dropout):
                layer.row_offset = offset  # the chunk's first row in the global batch keys its masks
        try:
            loss, correct, doutputs = model._forward_and_loss(x, y, sample_weight, class_weight, training)
            if training:
                _backward_and_sum(model._current_plan(), doutputs, trainable, n_local, reducer, grads)
        except BaseException:
            model._current_plan().clear()
            raise
    if not training:
        return float(loss), correct, n_local
    if not n_local:  # no rows here (a last batch smaller than the number of ranks): add zeros alike
        for step in reversed(model._current_plan().steps):
            arrays = [np.zeros_like(layer._weights[w]) for _, layer, w in _entries_of(step, trainable)]
            grads.update(zip(_entries_of(step, trainable), arrays))
            reducer.add(arrays)
    moving = [layer._weights[w].copy() for _, layer, w in model.weight_entries()
              if w not in layer.trainable_weight_names]
    reducer.add(moving)
    totals = reducer.finish([float(loss) * n_local, correct, n_local, 1.0 if _stop_requested else 0.0])
    variables = [layer._weights[w] for _, layer, w in trainable]
    names = [key for key, _, _ in trainable]
    grads = [grads[entry] for entry in trainable]
    rows = totals[2]
    scale = np.float32(1.0 / rows)
    for g in grads:
        g *= scale
    with atomic_update():
        model.optimizer.apply_gradients(list(zip(grads, variables)), names)
        for layer in model._layers:
            layer.commit_step()
        averaged = iter(moving)
        for _, layer, w in model.weight_entries():
            if w not in layer.trainable_weight_names:
                layer._weights[w][...] = next(averaged) * np.float32(1.0 / world.size)
    if totals[3] > 0:
        raise KeyboardInterrupt
    return float(totals[0] / rows), round(totals[1]), round(rows)


def _entries_of(step, trainable):
    """The trainable (key, layer, weight) entries of one plan step, in the model's weight order."""
    return [entry for entry in trainable if any(entry[1] is layer for layer in step.layers)]


def _backward_and_sum(plan, doutputs, trainable, n_local, reducer, grads):
    """Backward one plan step at a time, last first; each step's gradients (times n_local: the sum over this
    rank's rows) go to the reducer at once, so full buckets are summed while earlier steps still compute."""
    dy = doutputs
    for i in range(len(plan.steps) - 1, -1, -1):
        dy, step_grads = plan.backward(dy, start=i, stop=i + 1, need_dx=i > 0)
        arrays = []
        for entry in _entries_of(plan.steps[i], trainable):
            g = np.asarray(step_grads[entry[1]][entry[2]], dtype=np.float32)
            g *= np.float32(n_local)
            grads[entry] = g
            arrays.append(g)
        reducer.add(arrays)
        reducer.progress()


def reduce_totals(world, totals):
    """Sum an inference epoch's running totals (loss weighted by rows, correct, rows) over ranks."""
    loss, correct, count = world.sum_scalars([totals.loss, totals.correct, totals.count])
    totals.loss, totals.correct, totals.count = float(loss), round(correct), round(count)
    return totals
