"""Evaluate a trained model on labelled images: metrics (microcnn/metrics.py), a row per image (the per-image
CSV), and the open-set figures when the model carries an unknown-image detector. Files and plots are the
command line's business (microcnn/cli/evaluate.py, cli/_train_extras.py).

Which images: a folder of class sub-folders; a dataset root (its test/ if present, else its validation/,
valid/ or val/); or a split.csv written by `microcnn-train --validation-split` (its rows of one subset).
"""

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from .data import VALIDATION_DIR_NAMES, DatasetError, _list_class_dirs, _scan_split, preprocess_for_prediction
from .metrics import classification_report

PER_IMAGE_COLUMNS = ("path", "true", "predicted", "probability", "correct")
OPEN_SET_COLUMNS = ("known", "ood_score")


def resolve_folder(path):
    """The folder of class sub-folders to evaluate: DATA/test, else DATA/validation (valid, val), else
    DATA."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    for name in ("test", *VALIDATION_DIR_NAMES):
        if (path / name).is_dir():
            return path / name
    if (path / "train").is_dir():
        raise DatasetError(f"{path}: has train/ but no test/ or validation/ folder to evaluate on")
    if not _list_class_dirs(path):
        raise DatasetError(f"{path}: expected class folders (DATA/<class>/) or DATA/test/, DATA/validation/")
    return path


def labelled_images(folder, class_names):
    """[(path, class index)] of the images in folder's class sub-folders; a class folder that is not one of
    the model's classes is an error naming it."""
    found, _ = _scan_split(folder, class_names)
    label = {name: i for i, name in enumerate(class_names)}
    return [(p, label[name]) for name in sorted(found) for p in found[name]]


def split_csv_images(path, class_names, subset="validation"):
    """[(path, class index)] of the rows of `subset` in a split.csv (path, class, subset)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(rows[0]) < {"path", "class", "subset"}:
        raise DatasetError(f"{path}: expected a CSV with columns path, class, subset (microcnn-train's "
                           f"split.csv)")
    label = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({r["class"] for r in rows} - set(label))
    if unknown:
        raise DatasetError(f"{path}: class(es) {', '.join(unknown)} not among the model's classes "
                           f"({', '.join(class_names)})")
    items = [(Path(r["path"]), label[r["class"]]) for r in rows if r["subset"] == subset]
    if not items:
        subsets = sorted({r["subset"] for r in rows})
        raise DatasetError(f"{path}: no rows with subset {subset!r} (found: {', '.join(subsets)})")
    return items


def split_csv_text(splits, class_names):
    """CSV text (path, class, subset) for {"train": [(path, label)], "validation": [...]}: absolute paths."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "class", "subset"])
    for subset, items in splits.items():
        for p, label in items:
            writer.writerow([str(Path(p).resolve()), class_names[label], subset])
    return out.getvalue()


def compact_json(data):
    """Indented JSON with each innermost list of numbers (a confusion-matrix row) on one line."""
    text = json.dumps(data, indent=2)

    def one_line(match):
        return "[" + ", ".join(v.strip() for v in match.group(1).split(",")) + "]"

    return re.sub(r"\[\s*([-0-9.eE+,\s]+?)\s*\]", one_line, text) + "\n"


def predict_open_set(model, x, batch_size):
    """(probabilities, known bool array or None, score array or None): with the model's unknown-image
    detector (microcnn/ood.py) when it has one, in the same forward pass."""
    if getattr(model, "ood", None) is None:
        return model.predict(x, batch_size=batch_size), None, None
    probs, scores, known = model.predict_ood(x, batch_size=batch_size)
    return probs, np.asarray(known, bool), np.asarray(scores, np.float64)


class Evaluation:
    """The outcome: `report` (metrics dict), `rows` (one dict per image), `failed` [(path, reason)]."""

    def __init__(self, class_names, report, rows, failed, open_set):
        self.class_names, self.report, self.rows, self.failed = class_names, report, rows, failed
        if open_set is not None:
            self.report["open_set"] = open_set

    def to_json(self, extra=None):
        data = {**(extra or {}), **self.report, "class_names": self.class_names,
                "unreadable": [{"path": str(p), "reason": r} for p, r in self.failed]}
        return compact_json(data)

    def per_image_csv(self):
        out = io.StringIO()
        columns = PER_IMAGE_COLUMNS + (OPEN_SET_COLUMNS if "open_set" in self.report else ())
        writer = csv.DictWriter(out, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({**row, "probability": f"{row['probability']:.6f}",
                             "correct": int(row["correct"])})
        return out.getvalue()

    def most_confidently_wrong(self, count):
        wrong = [r for r in self.rows if not r["correct"]]
        return sorted(wrong, key=lambda r: -r["probability"])[:count]


def evaluate_images(model, class_names, preprocessing, items, batch_size=32):
    """Predict every (path, label) in items; unreadable files are skipped and listed in `failed`."""
    rows, failed, y_true, y_pred, known_all = [], [], [], [], []
    has_detector = getattr(model, "ood", None) is not None
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        label_of = {str(p): label for p, label in chunk}
        x, ok, bad = preprocess_for_prediction([p for p, _ in chunk], preprocessing)
        failed += bad
        if not len(ok):
            continue
        probs, known, score = predict_open_set(model, x, batch_size)
        for i, (path, p) in enumerate(zip(ok, probs)):
            true, pred = label_of[str(path)], int(np.argmax(p))
            row = {"path": str(path), "true": class_names[true], "predicted": class_names[pred],
                   "probability": float(p[pred]), "correct": pred == true,
                   "loss": -math.log(max(float(p[true]), 1e-12))}
            if known is not None:
                row["known"] = int(known[i])
                row["ood_score"] = f"{score[i]:.6g}"
                known_all.append(bool(known[i]))
            rows.append(row)
            y_true.append(true)
            y_pred.append(pred)
    if not rows:
        raise DatasetError(f"no readable images to evaluate ({len(failed)} unreadable)")
    report = classification_report(np.array(y_true), np.array(y_pred), class_names)
    open_set = None
    if has_detector:
        known = np.array(known_all)
        correct = np.array([r["correct"] for r in rows])
        open_set = {"accepted": int(known.sum()), "accepted_fraction": float(known.mean()),
                    "accuracy_on_accepted": float(correct[known].mean()) if known.any() else None,
                    "rejected_correct_fraction": float(correct[~known].mean()) if (~known).any() else None}
    return Evaluation(class_names, report, rows, failed, open_set)


def summary_text(evaluation):
    """Metrics table, confusion matrix, and the open-set lines when there is a detector."""
    from .metrics import report_text

    lines = [report_text(evaluation.report, evaluation.class_names)]
    open_set = evaluation.report.get("open_set")
    if open_set is not None:
        n = evaluation.report["n"]
        acc = open_set["accuracy_on_accepted"]
        lines.append(f"Open set: accepted {open_set['accepted']} of {n} images as a known class "
                     f"({open_set['accepted_fraction']:.4f}); accuracy on accepted "
                     f"{'n/a' if acc is None else f'{acc:.4f}'}")
    if evaluation.failed:
        lines.append(f"Skipped {len(evaluation.failed)} unreadable image(s):")
        lines += [f"  {p}: {reason}" for p, reason in evaluation.failed]
    return "\n".join(lines)
