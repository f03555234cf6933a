"""What microcnn-train does around training besides the training itself: the dataset check before it (a
warning, never a stop), the held-out split saved as split.csv, and the one evaluation on DATASET/test/ at the
end with the saved model (never used to choose the epoch)."""

import sys
from pathlib import Path

from ..data import VALIDATION_DIR_NAMES, scan
from ..dataset_check import check_dataset, problems_text
from ..evaluation import evaluate_images, labelled_images, split_csv_text
from ..metrics import report_text
from . import _report

TEST_DIR = "test"
SPLIT_CSV = "split.csv"
TEST_EVALUATION = "test_evaluation.json"
_LISTED = 10  # groups per kind of problem shown before training; microcnn-check lists them all


def _progress(items, total):
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc="Checking", unit="image", disable=None, leave=False, file=sys.stderr)


def warn_about_dataset(dataset, prog):
    """Run the dataset check; print the sizes/modes line, and on stderr a warning naming the duplicated,
    conflicting and leaked images (the loader's summary already names unreadable files)."""
    result = check_dataset(dataset, progress=_progress)
    keys = ("duplicates", "conflicts", "leaks")
    groups = sum(len(result[k]) for k in keys)
    summary = result["summary"]
    print("Dataset check: " + "; ".join(
        f"{label} " + ", ".join(f"{value} ({n})" for value, n in list(summary[key].items())[:3])
        + (" ..." if len(summary[key]) > 3 else "")
        for key, label in (("sizes", "sizes"), ("modes", "modes"), ("bit_depths", "bit depths")))
        + ("" if groups else "; no duplicated, conflicting or leaked images"))
    if groups:
        listed = {**result, "unreadable": [], **{k: result[k][:_LISTED] for k in keys}}
        more = [f"{len(result[k]) - _LISTED} more {k}" for k in keys if len(result[k]) > _LISTED]
        print(f"{prog}: warning: the dataset check found {groups} group(s) of repeated images; training goes "
              f"on (leaked images make validation and test scores too optimistic, conflicts teach two labels "
              f"for one image):\n{problems_text(listed, dataset)}"
              + (f"\n  ... and {', '.join(more)} (microcnn-check {dataset} lists all)" if more else ""),
              file=sys.stderr, flush=True)
    return result


def test_folder(dataset, class_names):
    """[(path, label)] of DATASET/test/ (checked before training, so a bad folder fails fast), or None."""
    folder = Path(dataset) / TEST_DIR
    if not folder.is_dir() or not (Path(dataset) / "train").is_dir():
        return None
    return labelled_images(folder, class_names)


def split_csv(dataset, validation_split, seed, class_names):
    """split.csv's text (path, class, subset) when the validation images are drawn at random (no validation/
    folder), else None: the same scan and seed as FolderDataset, so the rows are exactly its split."""
    root = Path(dataset)
    if any((root / name).is_dir() for name in VALIDATION_DIR_NAMES):
        return None
    names, splits, _ = scan(root, validation_split, seed)
    if names != class_names:
        raise RuntimeError(f"{root}: the class folders changed while it was read; run again")
    return split_csv_text(splits, class_names)


def write_or_remove(path, text):
    """Write text to path, or with text None remove what an earlier run (--overwrite) left there: a split or a
    test evaluation that describes another model."""
    if text is not None:
        _report.write_atomic(path, text)
    elif Path(path).is_file():
        Path(path).unlink()


def evaluate_test(out, items, batch_size):
    """Evaluate the model saved in OUT on the test images; write OUT/test_evaluation.json and print it."""
    from .predict import load_trained_model

    model, class_names, preprocessing = load_trained_model(out)
    evaluation = evaluate_images(model, class_names, preprocessing, items, batch_size)
    data = {"data": str(Path(items[0][0]).parent.parent), "model": str(out)}
    _report.write_atomic(Path(out) / TEST_EVALUATION, evaluation.to_json(data))
    title = f"Test set ({data['data']}, used once, after training)"
    print(report_text(evaluation.report, class_names, title=title))
    open_set = evaluation.report.get("open_set")
    if open_set is not None:
        acc = open_set["accuracy_on_accepted"]
        print(f"Open set: accepted {open_set['accepted_fraction']:.4f} of the test images; accuracy on "
              f"accepted {'n/a' if acc is None else f'{acc:.4f}'}")
    for path, reason in evaluation.failed:
        print(f"Skipped unreadable test image {path}: {reason}", file=sys.stderr)
    return TEST_EVALUATION


def plot_details(settings, dataset, ds):
    """The run's details for the title of curves.png."""
    return {"dataset": Path(dataset).resolve().name, "arch": settings["arch"],
            "images": f"{len(ds.x_train)} train / {len(ds.x_val)} val, "
                      f"{'x'.join(map(str, ds.input_shape))}",
            "Adam lr": f"{settings['lr']:g}" + ("" if settings.get("schedule", "constant") == "constant"
                                                else f" ({settings['schedule']})"),
            "seed": settings["seed"]}
