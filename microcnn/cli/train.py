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
from ..data import COLOR_MODES
from ..images import describe
from ..ood import DEFAULT_METHOD, METHODS
from ..plots import PLOT_FORMATS
from ..presets import available_presets
from ..readers import Z_PROJECTIONS
from ..training import _defer_keyboard_interrupt as defer_keyboard_interrupt
from . import _augment_args, _metadata, _open_set, _report, _resume, _safety, _train_extras
from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ArgumentParser,
    UsageError,
    channel_list,
    fraction,
    help_formatter,
    image_size,
    non_negative_int,
    parse,
    positive_float,
    positive_int,
    run,
)
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

PROG = "microcnn-train"
SCHEDULES = ("constant", "cosine", "plateau")
CHECKPOINT = "checkpoint"
MARKER = "microcnn-train"  # metadata["trained_by"]: the model and checkpoint directories this tool wrote

EPILOG = """\
dataset layouts (class order = folder names sorted):
  DATASET/train/<class>/*.png  and  DATASET/validation/<class>/*.png   (or valid/, val/)
  DATASET/<class>/*.png        a seeded, stratified --validation-split (default 0.2) is held out
  DATASET/test/<class>/*.png   optional: evaluated once at the end with the saved model (test_evaluation.json)

the dataset is checked first (microcnn-check): duplicated, conflicting and leaked images are a warning

several processes (pip install 'microcnn[mpi]'):
  mpiexec -n N microcnn-train DATASET ...   (or srun) trains one model; --batch-size is the global batch,
  rank 0 writes; under MPI a checkpoint is saved every epoch, and SIGUSR1 stops with one at the current step

exit status: 0 trained, 1 error or a NaN/Inf loss (the last good model is kept), 2 bad command line,
130 interrupted (checkpoint saved; use --resume)
"""


def build_parser():
    p = ArgumentParser(prog=PROG, description="Train a small CNN on a folder of labelled images.",
                       epilog=EPILOG, formatter_class=help_formatter)
    p.add_argument("dataset", metavar="DATASET", help="dataset folder (see layouts below)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="number of epochs (default 20; with --resume: the checkpoint's, or this to extend)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per step (default 32)")
    p.add_argument("--image-size", type=image_size, default="auto", metavar="SIZE",
                   help="resize images to SIZE or HEIGHTxWIDTH pixels, or auto: the training images' median "
                        "size, the larger side capped at 150 (default auto)")
    p.add_argument("--lr", type=positive_float, default=0.0004, help="Adam learning rate (default 0.0004)")
    p.add_argument("--color", choices=COLOR_MODES, default="auto",
                   help="auto: grayscale if every training image is, else rgb (default auto)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="make the run repeatable (default: a random seed, printed and saved)")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--out", default="model", help="output folder (default model/)")
    p.add_argument("--channels", type=channel_list, default=None, metavar="LIST",
                   help="keep these channels of each image, numbered from 0 in file order, e.g. 0,2")
    p.add_argument("--z-projection", choices=Z_PROJECTIONS, default=None,
                   help="reduce a z-stack (TIFF with a Z axis) to one plane by its max or mean")
    _augment_args.add_arguments(p)
    p.add_argument("--validation-split", type=fraction, default=None, metavar="F",
                   help="hold out fraction F per class when DATASET has no validation/ folder")
    p.add_argument("--arch", choices=sorted(available_presets()), default="seed",
                   help="network architecture (default seed)")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                   help="f32 (default), or bf16: conv and dense products on bf16-rounded operands with float32 "
                        "sums and float32 master weights (a CPU with AVX512_BF16 runs them natively)")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning rate: constant; cosine decay to 0 over the run; or plateau: halve it when "
                        "val_loss has not improved for 2 epochs (default constant)")
    p.add_argument("--patience", type=positive_int, default=None, metavar="N",
                   help="stop early when val_loss has not improved for N epochs")
    p.add_argument("--class-weight", choices=("none", "auto"), default="none",
                   help="auto: weight each class by n_images / (n_classes * its images), for imbalanced "
                        "datasets (default none)")
    p.add_argument("--accept", type=fraction, default=0.95, metavar="Q",
                   help="calibrate the unknown-image detector to accept the fraction Q of validation images "
                        "(default 0.95; microcnn-predict --accept changes it later)")
    p.add_argument("--ood-method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"how the detector scores likeness to the training images (default {DEFAULT_METHOD}; "
                        f"see the README's open-set section)")
    p.add_argument("--plot-format", choices=PLOT_FORMATS, default="png",
                   help="format of curves and confusion plots (default png)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the check for duplicated, conflicting and leaked images before training")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="decode images once into an on-disk cache in DIR and stream batches from it "
                        "(default DATASET/.microcnn-cache)")
    p.add_argument("--no-cache", action="store_true",
                   help="decode every image into memory at each run instead of using the cache")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run saved in OUT/checkpoint/")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model in a non-empty OUT (only the files this tool writes)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


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
