"""microcnn-predict IMAGE_OR_DIR ...: name the class of each image with a model from microcnn-train.

Directories are walked (hidden files and non-image files skipped); images are decoded exactly as in
training (the model's `preprocessing`) and predicted in batches. One result per image on stdout; a file
that cannot be read is named on stderr, the others are still predicted, and the exit status is then 1.
An image that resembles none of the training images (the model's open-set detector, microcnn/ood.py) is
reported as unknown, with its nearest class; that is an answer, not an error.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

from .. import distributed
from ..data import preprocess_for_prediction, walk_files
from ..data import printable_name as escape
from ..images import readable_extensions
from ..input_check import image_kind, kind_differences
from . import _metadata
from ._common import (
    EXIT_ERROR,
    EXIT_OK,
    ArgumentParser,
    fraction,
    help_formatter,
    parse,
    positive_int,
    run,
)

PROG = "microcnn-predict"
EPILOG = """\
output formats:
  text  PATH: CLASS (PROBABILITY), or with --top-k K: PATH: CLASS1 P1, CLASS2 P2, ...
        PATH: unknown (nearest: CLASS PROBABILITY) for an image unlike the training images
  json  a list of {"path", "class", "probability", "top_k": [{"class", "probability"}, ...], "known",
        "score"}; class and probability are the nearest class's, score is higher for images more like
        the training images
  csv   path,class,probability[,class_2,probability_2,...],known,score

several processes (pip install 'microcnn[mpi]'): mpiexec -n N microcnn-predict ... shares the batches out;
rank 0 writes the output in the same order as one process

A file whose bit depth, channel count or size differs from the training images' is named in a warning on
stderr (it is still predicted).

exit status: 0 all predicted (unknown included), 1 some file failed (named on stderr) or the model could
not be loaded, 2 bad command line
"""


def build_parser():
    p = ArgumentParser(prog=PROG, description="Classify images with a model trained by microcnn-train.",
                       epilog=EPILOG, formatter_class=help_formatter)
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    p.add_argument("--model", default="model", help="model folder written by microcnn-train (default model/)")
    p.add_argument("--top-k", type=positive_int, default=1, metavar="K", help="show the K most likely classes")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text", help="output format (default text)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (default 32)")
    p.add_argument("--explain", default=None, metavar="DIR",
                   help="write a Grad-CAM heatmap of the predicted class per image: DIR/<name>.png (overlay) "
                        "and DIR/<name>.npy (float32, the model's input size)")
    p.add_argument("--explain-method", choices=("gradcam", "hirescam"), default="gradcam",
                   help="gradcam: channel weights from the averaged gradient; hirescam: gradient x feature map "
                        "per place, better for Flatten + Dense heads (default gradcam)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over the 8 flips/rotations by 90 degrees of each image "
                        "(4 for non-square sizes); 8x slower")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.add_argument("--accept", type=fraction, default=None, metavar="Q",
                   help="accept the fraction Q of known images (e.g. 0.99: fewer unknown answers, more "
                        "unfamiliar images named as a class; default: the model's, set by microcnn-train)")
    p.add_argument("--no-unknown", action="store_true",
                   help="always name the nearest class (no unknown answer, no known/score fields)")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                   help="bf16: Dense layers on bf16 weights, and conv layers too on CPUs with AVX512_BF16; "
                        "float32 accumulation (default f32)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    return run(PROG, _main, argv)


def load_trained_model(path):
    """(model, class_names, preprocessing) from a microcnn-train model folder; errors name the folder."""
    from .. import load_model

    model = load_model(path, compile=False)
    meta = model.metadata or {}
    config = Path(path) / "config.json"
    if "class_names" not in meta and "preprocessing" not in meta:
        raise RuntimeError(f"{config}: this model has no class names or preprocessing in its metadata; "
                           f"was it trained with microcnn-train?")
    names = _metadata.check_class_names(meta, config, model.output_shape[-1])
    return model, list(names), _metadata.check_preprocessing(meta, config, model.input_shape[1:])


def collect_images(paths):
    """Files in command-line order, directories walked in sorted order. Returns (files, missing)."""
    extensions = readable_extensions()
    files, missing = [], []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(f for f in walk_files(path) if f.suffix.lower() in extensions)
        elif path.exists():
            files.append(path)
        else:
            missing.append(path)
    return files, missing


NON_FINITE = "the model gave non-finite scores for this image (its values are beyond what the network can compute with)"


def _main(argv):
    args = parse(build_parser(), argv)
    distributed.world()  # under mpiexec/srun the files are shared out between the processes
    distributed.quiet_other_ranks()
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise RuntimeError(f"--model {args.model}: no such model folder (train one with microcnn-train)")
    model, class_names, preprocessing = load_trained_model(model_dir)
    model.precision = args.precision
    k = min(args.top_k, len(class_names))
    detector = None if args.no_unknown else model.ood
    if detector is None and not args.no_unknown and distributed.is_root():
        print(f"{PROG}: note: {model_dir}: this model has no open-set detector (trained by an older microcnn), "
              f"so it cannot answer unknown; retrain it to get one", file=sys.stderr)
    profile = (model.metadata or {}).get("input_profile")
    files, missing = collect_images(args.paths)
    failures = 0
    for path in missing if distributed.is_root() else ():
        print(f"{PROG}: {escape(path)}: no such file or directory", file=sys.stderr)
        failures += 1
    writer = _Writer(args.format, k, sys.stdout, detector is not None) if distributed.is_root() else None
    explainer = None
    if args.explain is not None:
        from ..explain import ExplanationWriter

        explainer = ExplanationWriter(args.explain, model, args.explain_method)

    def predict_batch(batch):
        """-> ([(path, ranked, known, score)], [(path, reason)], [message]) for one batch of files."""
        x, ok, failed = preprocess_for_prediction(batch, preprocessing)
        messages, results = [], []
        for path in ok:
            differences = kind_differences(image_kind(path), profile)
            if differences:
                messages.append(f"{PROG}: warning: {escape(path)}: unlike the training images: "
                                f"{'; '.join(differences)}")
        if len(ok):
            if detector is None:
                probs = model.predict(x, batch_size=args.batch_size, tta=args.tta)
                scores = known = [None] * len(ok)
            else:
                probs, scores, known = model.predict_ood(x, batch_size=args.batch_size, accept=args.accept)
                if args.tta:  # the class from the 8 views; the unknown decision from the image as it is
                    probs = model.predict(x, batch_size=args.batch_size, tta=True)
            for path, p, score, is_known in zip(ok, probs, scores, known):
                if not np.isfinite(p).all():
                    failed.append((path, NON_FINITE))
                    continue
                order = np.argsort(-p, kind="stable")[:k]
                results.append((str(path), [(class_names[i], float(p[i])) for i in order], is_known, score))
            if explainer is not None:
                explainer.write(x, ok, np.argmax(probs, axis=1))
        return results, failed, messages

    for results, failed, messages in distributed_batches(files, args.batch_size, predict_batch):
        for path, reason in failed:
            print(f"{PROG}: {escape(path)}: {reason}", file=sys.stderr)
        failures += len(failed)
        for line in messages:
            print(line, file=sys.stderr)
        for result in results:
            writer.write(*result)
    if writer is None:
        return EXIT_OK  # rank 0 reports and sets the exit status
    writer.close()
    if explainer is not None and explainer.empty:
        print(f"{PROG}: note: {len(explainer.empty)} heatmap(s) are empty (no positive {args.explain_method} "
              f"evidence for the predicted class, e.g. {explainer.empty[0]})"
              + ("; try --explain-method hirescam" if args.explain_method == "gradcam" else ""), file=sys.stderr)
    if not files and not missing:
        raise RuntimeError(f"no image files found in {', '.join(args.paths)}")
    return EXIT_ERROR if failures else EXIT_OK


def distributed_batches(files, batch_size, predict_batch):
    """Yields predict_batch(batch) for every batch of files, in order. Under MPI (on rank 0 only) batch j
    is computed by rank j % N and the results of each round of N batches are gathered to rank 0, so the
    output streams in the order of a 1-process run while memory holds one round."""
    world = distributed.world()
    starts = list(range(0, len(files), batch_size))
    if world is None:
        for start in starts:
            yield predict_batch(files[start:start + batch_size])
        return
    for first in range(0, len(starts), world.size):
        mine = first + world.rank
        result = predict_batch(files[starts[mine]:starts[mine] + batch_size]) if mine < len(starts) else None
        gathered = world.gather(result)
        if world.rank == 0:
            yield from (r for r in gathered if r is not None)


class _Writer:
    """Streams results as text or CSV; JSON is written as one list at the end."""

    def __init__(self, fmt, k, stream, open_set):
        self.fmt, self.k, self.stream, self.open_set = fmt, k, stream, open_set
        self.items = []
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            header = ["path", "class", "probability"]
            for i in range(2, k + 1):
                header += [f"class_{i}", f"probability_{i}"]
            self.csv.writerow(header + (["known", "score"] if open_set else []))

    def write(self, path, ranked, known=None, score=None):
        """`ranked`: [(class, probability)] best first; known/score: the detector's answer (None without)."""
        if self.fmt == "text":
            path = escape(path)  # a newline in a file name must not split the line
            if self.k == 1:
                answer = f"{ranked[0][0]} ({ranked[0][1]:.4f})"
            else:
                answer = ", ".join(f"{c} {p:.4f}" for c, p in ranked)
            if known is not None and not known:
                answer = "unknown (nearest: " + ", ".join(f"{c} {p:.4f}" for c, p in ranked) + ")"
            print(f"{path}: {answer}", file=self.stream)
        elif self.fmt == "csv":
            row = [path]
            for c, p in ranked:
                row += [c, f"{p:.6f}"]
            if self.open_set:
                row += ["true" if known else "false", f"{score:.6g}"]
            self.csv.writerow(row)
        else:
            item = {"path": path, "class": ranked[0][0], "probability": ranked[0][1],
                    "top_k": [{"class": c, "probability": p} for c, p in ranked]}
            if self.open_set:
                item.update(known=bool(known), score=float(score))
            self.items.append(item)
        self.stream.flush()

    def close(self):
        if self.fmt == "json":
            json.dump(self.items, self.stream, indent=2)
            self.stream.write("\n")


if __name__ == "__main__":
    sys.exit(main())
