"""microcnn-evaluate DATA --model M: accuracy, per-class precision/recall/F1, confusion matrix, the worst
mistakes."""

import sys
from pathlib import Path

from .. import plots
from ..data import preprocess_for_prediction
from ..evaluation import evaluate_images, labelled_images, resolve_folder, split_csv_images, summary_text
from ..plots import PLOT_FORMATS
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    ArgumentParser,
    UsageError,
    help_formatter,
    parse,
    positive_int,
    run,
    set_threads,
)
from ._report import write_atomic
from .predict import load_trained_model

PROG = "microcnn-evaluate"
EPILOG = """\
DATA is one of:
  a folder of class sub-folders          DATA/<class>/*.png (folder names = the model's class names)
  a dataset root                         its test/ if present, else validation/ (or valid/, val/)
  a split.csv from microcnn-train        its rows of --subset (default validation)

metrics follow scikit-learn (classification_report, confusion_matrix); a ratio with a zero denominator is 0.
json keys: accuracy, n, per_class {class: {precision, recall, f1, support}}, macro_avg, weighted_avg,
confusion (rows = true class, model's class order), class_names, unreadable, data, model, and open_set
{accepted, accepted_fraction, accuracy_on_accepted} when the model has an unknown-image detector.

--out DIR writes evaluation.json, predictions.csv (path, true, predicted, probability, correct),
confusion.png and top_losses.png (the most confidently wrong images; plots need matplotlib).

exit status: 0 evaluated, 1 error or some file unreadable (named; the others are evaluated),
2 bad command line
"""


def build_parser():
    p = ArgumentParser(prog=PROG, description="Evaluate a model from microcnn-train on labelled images.",
                       epilog=EPILOG, formatter_class=help_formatter)
    p.add_argument("data", metavar="DATA", help="labelled images (see below)")
    p.add_argument("--model", default="model", help="model folder written by microcnn-train (default model/)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write the report, per-image CSV and plots here")
    p.add_argument("--plot-format", choices=PLOT_FORMATS, default="png", help="figure format (default png)")
    p.add_argument("--top-losses", type=positive_int, default=20, metavar="N",
                   help="images in top_losses.png (default 20)")
    p.add_argument("--subset", default="validation", help="for a split.csv: the subset to evaluate")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    return run(PROG, _main, argv)


def _main(argv):
    args = parse(build_parser(), argv)
    set_threads(args.threads)
    data, model_dir = Path(args.data), Path(args.model)
    if not data.exists():
        raise UsageError(f"DATA {args.data}: no such file or directory")
    if not model_dir.is_dir():
        raise RuntimeError(f"--model {args.model}: no such model folder (train one with microcnn-train)")
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {args.out}: exists and is not a directory")
        if (out / "config.json").exists():
            raise UsageError(f"--out {args.out}: holds a model; choose another folder so its files are kept")
    model, class_names, preprocessing = load_trained_model(model_dir)
    if data.is_file():
        source = data
        items = split_csv_images(data, class_names, args.subset)
    else:
        source = resolve_folder(data)
        items = labelled_images(source, class_names)
    evaluation = evaluate_images(model, class_names, preprocessing, items, args.batch_size)
    for path, reason in evaluation.failed:
        print(f"{PROG}: {path}: {reason}", file=sys.stderr)
    extra = {"data": str(source), "model": str(model_dir)}
    if args.format == "json":
        sys.stdout.write(evaluation.to_json(extra))
    else:
        print(f"Evaluating {model_dir}/ on {source}")
        print(summary_text(evaluation))
    if args.out is not None:
        written = write_outputs(args.out, evaluation, preprocessing, extra, args.plot_format, args.top_losses,
                                title=f"Evaluation on {source}")
        stream = sys.stderr if args.format == "json" else sys.stdout  # stdout stays valid JSON
        print(f"Written to {Path(args.out)}/: {', '.join(written)}", file=stream)
    return EXIT_ERROR if evaluation.failed else EXIT_OK


def write_outputs(out_dir, evaluation, preprocessing, extra=None, plot_format="png", top_losses=20,
                  title="Evaluation"):
    """evaluation.json, predictions.csv, confusion.<fmt>, top_losses.<fmt> in out_dir; returns the names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "evaluation.json", evaluation.to_json(extra))
    write_atomic(out / "predictions.csv", evaluation.per_image_csv())
    written = ["evaluation.json", "predictions.csv"]
    matrix = evaluation.report["confusion"]
    if plots.confusion(out / f"confusion.{plot_format}", matrix, evaluation.class_names, title=title):
        written.append(f"confusion.{plot_format}")
        worst = evaluation.most_confidently_wrong(top_losses)
        x, ok, _ = preprocess_for_prediction([Path(r["path"]) for r in worst], preprocessing)
        by_path = {str(p): image for p, image in zip(ok, x)}
        shown = [r for r in worst if r["path"] in by_path]
        captions = [f"{Path(r['path']).name}\ntrue {r['true']}\n"
                    f"predicted {r['predicted']} {r['probability']:.3f}" for r in shown]
        wrong = sum(not r["correct"] for r in evaluation.rows)
        heading = f"Most confidently wrong: {len(shown)} of {wrong} misclassified images" if shown else \
            "No misclassified images"
        plots.image_grid(out / f"top_losses.{plot_format}", [by_path[r["path"]] for r in shown], captions,
                         heading)
        written.append(f"top_losses.{plot_format}")
    return written


if __name__ == "__main__":
    sys.exit(main())
