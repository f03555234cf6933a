"""Open-set benchmark: how well does each detector of microcnn.ood tell known images from unknown ones?

Trains a preset on 5 Fashion-MNIST classes (10 % of their training images held out for calibration), then
for every method of microcnn.ood, in the same run, on the same features:
  AUROC and FPR at 95 % TPR against four unknown sets -- the 5 other classes' test images (near),
  uniform noise, constant images, inverted test images of the known classes (far);
  the fraction of known test images accepted at the calibrated threshold (--accept) and the accuracy on them.
Also the overheads of the default method: fit_ood's time against training time, and predict_ood's throughput
against predict's (alternated, median of --repeats; the machine may be shared, so read ratios, not seconds).

    python benchmarks/open_set.py --arch seed --epochs 8
"""

import argparse
import os
import sys
import time

import numpy as np

import microcnn
from microcnn import ood
from microcnn.cli._open_set import FIT_IMAGES
from microcnn.optimizers import Adam
from microcnn.presets import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist import DEFAULT_DIR, AugmentedBatches, load_fashion_mnist

NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arch", default="seed")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", type=float, default=None, metavar="SHIFT",
                   help="flips and shifts up to SHIFT of the size while training (default: none)")
    p.add_argument("--known", default="0,1,2,3,4", help="the known classes (Fashion-MNIST label numbers)")
    p.add_argument("--accept", type=float, default=0.95, help="fraction of validation images to accept")
    p.add_argument("--noise", type=int, default=2000, help="images in each synthetic unknown set")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats for the throughput ratio")
    p.add_argument("--save-model", default=None, metavar="DIR", help="also save the model (with its detector)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=DEFAULT_DIR)
    return p


def unknown_sets(x_test, y_test, known, count, seed):
    rng = np.random.default_rng(seed + 1000)
    known_mask = np.isin(y_test, known)
    shape = (count, *x_test.shape[1:])
    return {
        "near (other classes)": x_test[~known_mask],
        "uniform noise": rng.random(shape, dtype=np.float32),
        "constant": np.broadcast_to(rng.random((count, 1, 1, 1), dtype=np.float32), shape).copy(),
        "inverted known": np.ascontiguousarray(1.0 - x_test[known_mask]),
    }


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        microcnn._core.set_num_threads(args.threads)
    microcnn.set_seed(args.seed)
    known = [int(c) for c in args.known.split(",")]
    x_train, y_train, x_test, y_test = load_fashion_mnist(args.data_dir)
    remap = np.full(10, -1)
    remap[known] = np.arange(len(known))
    keep = np.isin(y_train, known)
    x_known, y_known = x_train[keep], remap[y_train[keep]].astype(np.int32)
    order = np.random.default_rng(args.seed).permutation(len(x_known))
    n_val = len(x_known) // 10
    x_val = x_known[order[:n_val]]
    x_fit, y_fit = x_known[np.sort(order[n_val:])], y_known[np.sort(order[n_val:])]
    test_mask = np.isin(y_test, known)
    x_in, y_in = x_test[test_mask], remap[y_test[test_mask]]
    unknown = unknown_sets(x_test, y_test, known, args.noise, args.seed)

    model = build_model(args.arch, input_shape=(28, 28, 1), num_classes=len(known))
    model.compile(optimizer=Adam(learning_rate=args.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    train = AugmentedBatches(x_fit, y_fit, args.batch_size, args.augment, args.seed)
    print(f"{args.arch}: known {', '.join(NAMES[c] for c in known)}; train {len(x_fit)}, validation {len(x_val)}, "
          f"known test {len(x_in)}; {args.epochs} epochs, {microcnn._core.get_num_threads()} thread(s)", flush=True)
    _, train_time = timed(lambda: model.fit(train, epochs=args.epochs, verbose=0))
    probs, _ = timed(lambda: model.predict(x_in, batch_size=256))
    accuracy = float(np.mean(np.argmax(probs, axis=1) == y_in))
    print(f"trained in {train_time:.1f} s; known test accuracy {accuracy:.4f}", flush=True)

    # The path microcnn-train takes for the default method, timed: features of a seeded sample of the
    # training images (as many as microcnn-train uses) and of the validation images, fit, calibration.
    sample = np.sort(np.random.default_rng(args.seed + 1).permutation(len(x_fit))[:FIT_IMAGES])
    x_sample, y_sample = x_fit[sample], y_fit[sample]
    _, fit_time = timed(lambda: model.fit_ood(x_sample, y_sample, validation_data=x_val, accept=args.accept,
                                              batch_size=args.batch_size))
    throughput = measure_throughput(model, x_in, args.repeats)

    # Every method on the same features.
    # (taps: the features followed by each convolution block's channel statistics, for "multilayer")
    tapped = {name: np.concatenate([f for _, f, _ in model._predict_batches(x, 256, taps=True)])
              for name, x in {"fit": x_sample, "val": x_val, "in": x_in, **unknown}.items()}
    width = model.features(x_val[:1]).shape[1]
    rows = []
    for method in ood.METHODS:
        detector = ood.OODDetector(method)
        f_fit, f_val, f_in = (tapped[k] if detector.taps else tapped[k][:, :width] for k in ("fit", "val", "in"))
        _, method_fit = timed(lambda d=detector, f=f_fit: d.fit(f, model._logits(f[:, :width]), y_sample,
                                                                model._tap_dims))
        if detector.taps:
            detector.set_normalisation(detector.layer_scores(f_val))
        detector.calibrate(detector.score(f_val, model._logits(f_val[:, :width])), args.accept)
        s_in = detector.score(f_in, model._logits(f_in[:, :width]))
        accepted = s_in >= detector.threshold
        row = {"method": method, "fit_s": method_fit, "accepted": float(np.mean(accepted)),
               "accuracy_accepted": float(np.mean(np.argmax(probs[accepted], axis=1) == y_in[accepted]))}
        for name in unknown:
            f = tapped[name] if detector.taps else tapped[name][:, :width]
            s_out = detector.score(f, model._logits(f[:, :width]))
            row[name] = (ood.auroc(s_in, s_out), ood.fpr_at_tpr(s_in, s_out, 0.95),
                         float(np.mean(s_out >= detector.threshold)))
        rows.append(row)
    print_table(rows, list(unknown), args.accept, accuracy)
    plain = {k: tapped[k][:, :width] for k in ("fit", "val", "in")}
    print_near_by_class(model, plain["fit"], y_sample, plain["val"], plain["in"], x_test, y_test, known, args.accept)
    check_targets(rows, list(unknown), args.accept)
    print(f"\noverhead of {ood.DEFAULT_METHOD}: fit_ood on {len(x_sample)} training images {fit_time:.2f} s = "
          f"{100 * fit_time / train_time:.1f} % of the training time ({train_time:.1f} s, {args.epochs} epochs)")
    for clock in ("wall", "cpu"):
        plain, with_ood = throughput[clock]
        print(f"prediction throughput ({clock} time, batch 32, median of {args.repeats}): {plain:.0f} img/s plain, "
              f"{with_ood:.0f} img/s with the detector ({100 * (1 - with_ood / plain):+.1f} % slower)")
    if args.save_model:
        model.save(args.save_model)
    return 0


def print_near_by_class(model, f_fit, y_fit, f_val, f_in, x_test, y_test, known, accept):
    """AUROC of mahalanobis-l2 and of max-softmax per unknown class: which classes make the near set hard."""
    print("\nnear set per unknown class, AUROC (mahalanobis-l2 / max-softmax):")
    scores = {}
    for method in ("mahalanobis-l2", "max-softmax"):
        detector = ood.OODDetector(method).fit(f_fit, model._logits(f_fit), y_fit)
        scores[method] = (detector, detector.score(f_in, model._logits(f_in)))
    parts = []
    for c in sorted(set(range(10)) - set(known)):
        f = model.features(x_test[y_test == c], 256)
        aucs = [ood.auroc(s_in, d.score(f, model._logits(f))) for d, s_in in scores.values()]
        parts.append(f"{NAMES[c]} {aucs[0]:.4f} / {aucs[1]:.4f}")
    print("  " + "; ".join(parts))


def measure_throughput(model, x, repeats):
    """Images per second of predict and predict_ood, alternated, median over repeats (batch 32 as the CLI), by
    wall time and by process CPU time (steadier when other processes share the cores)."""
    times = {("wall", "plain"): [], ("wall", "ood"): [], ("cpu", "plain"): [], ("cpu", "ood"): []}
    for _ in range(repeats):
        for kind, run in (("plain", lambda: model.predict(x, batch_size=32)),
                          ("ood", lambda: model.predict_ood(x, batch_size=32))):
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times["wall", kind].append(time.perf_counter() - wall)
            times["cpu", kind].append(time.process_time() - cpu)
    return {clock: tuple(len(x) / float(np.median(times[clock, kind])) for kind in ("plain", "ood"))
            for clock in ("wall", "cpu")}


def print_table(rows, sets, accept, accuracy):
    print(f"\nAUROC / FPR at 95 % TPR per unknown set; known test images accepted at --accept {accept} and the "
          f"accuracy on them (all known test images: {accuracy:.4f})\n")
    header = "| method | " + " | ".join(sets) + " | known accepted | accuracy on accepted |"
    print(header)
    print("|" + "---|" * (len(sets) + 3))
    for row in rows:
        cells = [f"{row[s][0]:.4f} / {row[s][1]:.3f}" for s in sets]
        print(f"| {row['method']} | " + " | ".join(cells) + f" | {row['accepted']:.3f} | "
              f"{row['accuracy_accepted']:.4f} |")
    print("\nunknown images accepted at the calibrated threshold: "
          + "; ".join(f"{row['method']} " + ", ".join(f"{row[s][2]:.3f}" for s in sets) for row in rows))


def check_targets(rows, sets, accept):
    by_method = {row["method"]: row for row in rows}
    default, baseline = by_method[ood.DEFAULT_METHOD], by_method["max-softmax"]
    print(f"\ntargets for the default method ({ood.DEFAULT_METHOD}):")
    for s in sets:
        auc, fpr, base = default[s][0], default[s][1], baseline[s][1]
        print(f"  {s}: AUROC {auc:.4f} {'>=' if auc >= 0.95 else '<'} 0.95; FPR95 {fpr:.3f} vs max-softmax "
              f"{base:.3f} ({'at most' if fpr <= base / 2 else 'more than'} half)")
    gap = 100 * (default["accepted"] - accept)
    print(f"  known test accepted {default['accepted']:.3f} for {accept}: {gap:+.1f} points "
          f"({'within' if abs(gap) <= 3 else 'outside'} +-3)")


if __name__ == "__main__":
    sys.exit(main())
