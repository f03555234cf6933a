"""microcnn-train DATASET: train a classifier on a folder of labelled images.

Writes to --out (default model/): the model of the epoch with the best validation accuracy (config.json,
weights.safetensors, with class names and preprocessing in its metadata; ood.safetensors, the detector of
unknown images, calibrated on the validation images), history.csv, confusion.csv, split.csv (when the
validation images are drawn at random), test_evaluation.json (when DATASET has a test/ folder) and, with
matplotlib, curves.png and confusion.png. Ctrl-C saves a resumable checkpoint in OUT/checkpoint/.
"""

import sys
import time
from pathlib import Path

import numpy as np

from .. import distributed
from ..cache import describe_cache
from ..images import describe
from ..ood import DEFAULT_METHOD
from ..training import _defer_keyboard_interrupt as defer_keyboard_interrupt
from . import _augment_args, _metadata, _open_set, _report, _resume, _safety, _train_extras
from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    parse,
    run,
)
from ._train_args import PROG, build_parser
from ._train_data import EpochCheckpoint, read_dataset
from ._training import (
    NonFiniteError,
    StopOnNonFinite,
    Tracker,
    build_compiled_model,
    class_weights_for,
    image_size_problem,
    learning_rate_for,
    training_callbacks,
)

CHECKPOINT = "checkpoint"
MARKER = "microcnn-train"  # metadata["trained_by"]: the model and checkpoint directories this tool wrote

def main(argv=None):
    return run(PROG, _main, argv, keep_going_without_stdout=True)


def _main(argv):
    args = parse(build_parser(), argv)
    world = distributed.world()  # under mpiexec/srun: one of several processes training one model
    distributed.quiet_other_ranks()
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise UsageError(f"DATASET {args.dataset}: no such directory")
    out = Path(args.out)
    _check_out(out, dataset, args)
    resume = _read_checkpoint(out) if args.resume else None
    settings = _settings(args, resume)
    if settings["image_size"] != "auto":
        problem = image_size_problem(settings["arch"], tuple(settings["image_size"]))
        if problem:
            raise UsageError(f"--image-size: {problem}")
    if world is not None:
        settings = world.bcast(settings)  # one seed for all ranks when it is drawn at random

    import microcnn

    microcnn.set_seed(settings["seed"])
    split_seed, shuffle_seed, augment_seed = (int(s) for s in np.random.SeedSequence(settings["seed"]).generate_state(3))
    print(f"Reading {dataset}/ ...", flush=True)
    ds = read_dataset(dataset, args, settings, split_seed, world)
    print(ds.report.summary(dataset))
    if ds.image_size_reason is not None:
        print(f"Image size: auto -> {ds.image_size[0]}x{ds.image_size[1]} ({ds.image_size_reason})")
        settings["image_size"] = list(ds.image_size)
        problem = image_size_problem(settings["arch"], ds.image_size)
        if problem:
            raise RuntimeError(f"--image-size auto chose {ds.image_size[0]}x{ds.image_size[1]}, but {problem}; "
                               f"pass --image-size")
    if not args.no_check and distributed.is_root():
        _train_extras.warn_about_dataset(dataset, PROG)
    test_items = _train_extras.test_folder(dataset, ds.class_names)
    if test_items:
        print(f"Test images: {len(test_items)} in {dataset / 'test'}/, evaluated once after training")
    split_text = _train_extras.split_csv(dataset, settings["validation_split"], split_seed, ds.class_names)
    if ds.cache is not None:
        on_disk = (ds.x_train.disk_bytes + ds.x_val.disk_bytes) / 1e6
        print(f"{describe_cache(ds.cache, len(ds.x_train) + len(ds.x_val) + len(ds.report.failed))}; "
              f"{on_disk:.1f} MB on disk, streamed as {ds.x_train.dtype} ({describe(ds.preprocessing, ds.any_8bit)})")
    else:
        print(f"Images in memory: {ds.nbytes / 1e6:.1f} MB as {ds.x_train.dtype} ({describe(ds.preprocessing, ds.any_8bit)})")
    if resume is not None and (resume["class_names"] != ds.class_names
                               or resume["preprocessing"] != ds.preprocessing):
        raise RuntimeError(f"{out / CHECKPOINT}: the checkpoint was trained on classes "
                           f"{', '.join(resume['class_names'])} with different images or preprocessing than "
                           f"{dataset}/ now has; start again with --overwrite")

    augmenter = _augment_args.build_augmentation(settings, augment_seed)
    train = ds.batches("train", settings["batch_size"], augmenter=augmenter, seed=shuffle_seed)
    validation = ds.batches("validation", settings["batch_size"]) if len(ds.x_val) else None
    if resume is None:
        model = build_compiled_model(settings["arch"], ds.input_shape, ds.num_classes,
                                     learning_rate_for(settings, len(train)), settings["precision"])
        tracker = Tracker(len(train), settings["epochs"], validation is not None)
    else:
        model = microcnn.load_model(out / CHECKPOINT)
        _metadata.check_class_names(resume, out / CHECKPOINT / "config.json", model.output_shape[-1])
        _metadata.check_preprocessing(resume, out / CHECKPOINT / "config.json", model.input_shape[1:])
        _resume.check_optimizer_state(model, out / CHECKPOINT / "optimizer.safetensors")
        state = resume["resume"]
        tracker = Tracker(len(train), settings["epochs"], validation is not None, state["history"],
                          state["best_epoch"], state["best"])
        if state["best_epoch"] is not None and (out / "config.json").exists():
            tracker.best_weights = microcnn.load_model(out, compile=False).get_weights()

    # The model and a checkpoint (weights, Adam's two moments) must fit: found now, not after training.
    _safety.check_free_space(out, 16 * model.count_params() + 10**6, "saving the model and a checkpoint")
    metadata = {
        "trained_by": MARKER, "class_names": ds.class_names, "preprocessing": ds.preprocessing,
        "arch": settings["arch"], "training": {**settings, "dataset": str(dataset.resolve()),
                                               "augment": augmenter.get_config() if augmenter else None},
        "input_profile": _open_set.input_profile(dataset, settings["validation_split"], split_seed),
    }
    start = tracker.epochs_completed
    threads = microcnn._core.get_num_threads()
    ranks = "" if world is None else f" x {world.size} MPI processes (batch {settings['batch_size']} split " \
        "between them)"
    class_weight = class_weights_for(settings["class_weight"], ds)
    extra_callbacks = training_callbacks(settings, validation is not None)
    guard = StopOnNonFinite(keep_last_good=validation is None)
    callbacks = [guard, tracker] + extra_callbacks
    if resume is not None:
        callbacks.append(_resume.restore(model, train, resume["resume"], extra_callbacks))
    if world is not None:
        callbacks.append(EpochCheckpoint(lambda: _save_checkpoint(
            model, out, metadata, _resume.capture(model, train, tracker, extra_callbacks))))
    schedule = "" if settings["schedule"] == "constant" else f" ({settings['schedule']} schedule)"
    print(f"{'Resuming' if resume else 'Training'} {settings['arch']} ({model.count_params():,} parameters) "
          f"from epoch {start + 1} to {settings['epochs']}: batch {settings['batch_size']}, Adam lr "
          f"{settings['lr']:g}{schedule}, {'' if settings['precision'] == 'f32' else 'bf16 precision, '}"
          f"{'no augmentation' if augmenter is None else augmenter.describe()}, "
          f"seed {settings['seed']}, {threads} thread{'s' if threads != 1 else ''}{ranks}", flush=True)
    if class_weight is not None:
        print("Class weights: " + ", ".join(f"{ds.class_names[c]} {w:.3g}" for c, w in class_weight.items()))
    t0 = time.perf_counter()
    try:
        model.fit(train, epochs=settings["epochs"], initial_epoch=start, validation_data=validation,
                  callbacks=callbacks, class_weight=class_weight, verbose=0)
    except KeyboardInterrupt:
        tracker.close()
        if not distributed.is_root():  # every rank stopped after the same step; rank 0 saves
            return EXIT_INTERRUPTED
        print("Interrupted: saving a checkpoint ...", file=sys.stderr, flush=True)
        with defer_keyboard_interrupt():  # a second Ctrl-C waits for the saves
            _save_checkpoint(model, out, metadata, _resume.capture(model, train, tracker, extra_callbacks))
            _finish(model, ds, tracker, out, metadata, validation, args.plot_format, split_text)
        print(f"Checkpoint saved in {out / CHECKPOINT}/; run the same command with --resume to continue.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteError as e:
        tracker.close()
        return _stop_non_finite(e, model, ds, tracker, guard, out, metadata, validation, settings,
                                (args.plot_format, split_text))
    print(f"Trained {tracker.epochs_completed - start} epoch(s) in {time.perf_counter() - t0:.1f} s")
    if world is not None:
        steps = max(world.allreduce_calls, 1)
        print(f"Gradient allreduce: {1000 * world.allreduce_seconds / steps:.1f} ms per step on average spent "
              f"waiting for it after the backward pass ({world.allreduce_seconds:.1f} s in total)")
        if not distributed.is_root():
            return EXIT_OK
    try:
        with defer_keyboard_interrupt():  # Ctrl-C now would lose the trained model: it waits for the save
            _finish(model, ds, tracker, out, metadata, validation, args.plot_format, split_text)
            _safety.remove_checkpoint(out / CHECKPOINT, _is_ours)  # the run it could resume has finished
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted after the model was saved completely", file=sys.stderr)
        return EXIT_OK
    if test_items and tracker.epochs_completed:
        written = _train_extras.evaluate_test(out, test_items, settings["batch_size"])
        print(f"Test evaluation written to {out / written}")
    elif tracker.epochs_completed:  # a new model: an earlier run's test evaluation no longer applies
        _train_extras.write_or_remove(out / _train_extras.TEST_EVALUATION, None)
    return EXIT_OK


def _stop_non_finite(error, model, ds, tracker, guard, out, metadata, validation, settings, finish_args):
    """A NaN/Inf loss or weight: keep the last good model (the best epoch's, or without validation the last
    finite epoch's), never the broken weights, and exit 1 with one line saying what happened."""
    if tracker.best_weights is None and guard.last_good is not None:
        tracker.best_weights = guard.last_good
    kept = ""
    if tracker.best_weights is not None and distributed.is_root():
        _finish(model, ds, tracker, out, metadata, validation, *finish_args)
        kept = f"; kept the model of the last good epoch in {out}/"
    else:
        tracker.history = {k: [] for k in tracker.history}  # nothing good to save
    print(f"{PROG}: error: {error}: training stopped (try a lower --lr than {settings['lr']:g}, or check the "
          f"images for extreme values){kept}", file=sys.stderr)
    return EXIT_ERROR


_SETTING_KEYS = ("epochs", "batch_size", "image_size", "lr", "color", "seed", "no_augment", "validation_split",
                 "arch")
# Added later: a checkpoint written before them resumes with these values.
_LATER_SETTINGS = {"schedule": "constant", "patience": None, "class_weight": "none", "accept": 0.95,
                   "ood_method": DEFAULT_METHOD, "augment": None, "channel_select": None, "z_projection": None,
                   "precision": "f32"}


def _settings(args, resume):
    """The run's settings: from the command line, or for --resume from the checkpoint (except --epochs)."""
    if resume is not None:
        settings = {k: resume["training"][k] for k in _SETTING_KEYS}
        settings.update({k: resume["training"].get(k, v) for k, v in _LATER_SETTINGS.items()})
        if args.epochs is not None:
            settings["epochs"] = args.epochs
        return settings
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    augment = _augment_args.augment_settings(args)
    size = args.image_size if args.image_size == "auto" else list(args.image_size)
    return {"epochs": args.epochs or 20, "batch_size": args.batch_size, "image_size": size,
            "lr": args.lr, "color": args.color, "seed": seed, "no_augment": augment["preset"] == "none",
            "augment": augment, "channel_select": args.channels, "z_projection": args.z_projection,
            "validation_split": args.validation_split, "arch": args.arch, "schedule": args.schedule,
            "patience": args.patience, "class_weight": args.class_weight, "accept": args.accept,
            "ood_method": args.ood_method, "precision": args.precision}


def _is_ours(folder):
    """True when folder holds a model or checkpoint written by this tool."""
    import json

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        return config.get("metadata", {}).get("trained_by") == MARKER
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _check_out(out, dataset, args):
    """Refuse to write where we would clobber something the user made."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    resolved, data = out.resolve(), dataset.resolve()
    if resolved == data or data in resolved.parents:
        raise UsageError(f"--out {out}: is inside DATASET {dataset}; choose a folder outside it")
    if args.resume:
        if not (out / CHECKPOINT / "config.json").exists():
            raise RuntimeError(f"{out / CHECKPOINT}: no checkpoint to resume (one is saved when training is "
                               f"interrupted with Ctrl-C)")
        _safety.probe_writable(out)
        return
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            what = "a model trained earlier" if _is_ours(out) else "files"
            raise RuntimeError(f"--out {out}: already contains {what}; pass --overwrite to replace the model "
                               f"(other files are kept), --resume to continue an interrupted run, or choose "
                               f"another --out")
        if distributed.is_root():
            _safety.remove_checkpoint(out / CHECKPOINT, _is_ours)
    if distributed.is_root():
        _safety.probe_writable(out)


def _read_checkpoint(out):
    path = out / CHECKPOINT / "config.json"
    config = _metadata.read_json(path)
    metadata = config.get("metadata") if isinstance(config, dict) else None
    if not isinstance(metadata, dict) or metadata.get("trained_by") != MARKER or "resume" not in metadata:
        raise RuntimeError(f"{out / CHECKPOINT}: not a checkpoint written by {PROG}")
    return _metadata.check_checkpoint(metadata, path)


def _save_checkpoint(model, out, metadata, state):
    model.save(out / CHECKPOINT, metadata={**metadata, "resume": state}, include_optimizer=True)


def _finish(model, ds, tracker, out, metadata, validation, plot_format="png", split_text=None):
    """Put the best weights in the model, save it, and write the history, confusion matrix, plots and the
    random validation split (split.csv)."""
    if validation is not None and validation.shard:  # all of it, also on rank 0 of an MPI run
        validation = ds.batches("validation", validation.batch_size, shard=False)
    if tracker.epochs_completed == 0:
        print("No epoch completed: no model saved.", file=sys.stderr)
        return
    if tracker.best_weights is not None:
        model.set_weights(tracker.best_weights)
    best_epoch = tracker.best_epoch if tracker.best_epoch is not None else tracker.epochs_completed
    metadata = {**metadata, "training": {**metadata["training"], "epochs_completed": tracker.epochs_completed,
                                          "best_epoch": best_epoch, "best": tracker.best}}
    out.mkdir(parents=True, exist_ok=True)
    _open_set.fit_detector(model, ds, validation, metadata["training"])
    model.save(out, metadata=metadata, include_optimizer=False)
    _report.write_atomic(out / "history.csv", _report.history_csv(tracker.history))
    matrix = None
    if validation is not None:
        predicted = np.argmax(model.predict(validation, batch_size=validation.batch_size), axis=1)
        matrix = _report.confusion_matrix(ds.y_val, predicted, ds.num_classes)
        print(_report.confusion_text(matrix, ds.class_names))
        _report.write_atomic(out / "confusion.csv", _report.confusion_csv(matrix, ds.class_names))
    _train_extras.write_or_remove(out / _train_extras.SPLIT_CSV, split_text)
    details = _train_extras.plot_details(metadata["training"], metadata["training"]["dataset"], ds)
    plots = _report.save_plots(out, tracker.history, matrix, ds.class_names, best_epoch, details, plot_format)
    if tracker.best_epoch is not None:
        acc = tracker.best["val_accuracy"]
        print(f"Saved the model of epoch {best_epoch} (best validation accuracy {acc:.4f}) to {out}/")
    else:
        print(f"Saved the model of epoch {best_epoch} (no validation images: the last epoch) to {out}/")
    files = ["history.csv"] + (["confusion.csv"] if matrix is not None else []) + [Path(p).name for p in plots]
    files += [_train_extras.SPLIT_CSV] if split_text is not None else []
    hint = "" if plots else " (pip install matplotlib for curves and confusion plots)"
    print(f"Also written: {', '.join(files)}{hint}")


if __name__ == "__main__":
    sys.exit(main())
