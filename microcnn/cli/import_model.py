"""microcnn-import KERAS_FILE --classes A,B,C --out model/: turn a Keras model into a model folder that
microcnn-predict (and microcnn-export) can use. The reading itself is microcnn/keras_import.py."""

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from ._common import EXIT_OK, ArgumentParser, UsageError, help_formatter, image_size, parse, run

PROG = "microcnn-import"
EPILOG = """\
Keras files read (with h5py; no TensorFlow needed):
  model.save("modelo.h5")          Keras 2 (tf.keras) or Keras 3 legacy HDF5: architecture + weights
  model.save("model.keras")        Keras 3 zip: architecture + weights
  model.to_json() in a .json file  architecture only: give the weights with --weights
  model.save_weights("pesos.h5")   weights only (Keras 2 .h5 or Keras 3 .weights.h5): either this file
                                   with --arch PRESET --image-size HxW [--color], or a Keras model or .json
                                   file as KERAS_FILE with this one as --weights

preprocessing: microcnn-predict resizes each image to the model's size (bilinear), converts it to the
model's channels (1 grayscale, 3 RGB) and divides 8-bit pixels by 255. A model trained on inputs scaled
differently (--rescale, e.g. 1 for raw 0-255 pixels) gets that factor folded into its first layer's
weights, so the folder predicts exactly as the Keras model did on its own inputs.

exit status: 0 written, 1 the file cannot be imported (named on stderr), 2 bad command line
"""


def build_parser():
    p = ArgumentParser(prog=PROG, description="Import a Keras model as a microcnn model folder.", epilog=EPILOG,
                       formatter_class=help_formatter)
    p.add_argument("keras_file", metavar="KERAS_FILE", help="Keras .h5, .keras or .json file (see below)")
    p.add_argument("--classes", required=True, metavar="A,B,C",
                   help="class names in the order of the model's outputs (Keras's flow_from_directory: sorted; "
                        "a Dense(1, sigmoid) output: NEGATIVE,POSITIVE)")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--weights", metavar="FILE", help="Keras weights file to load into the architecture")
    p.add_argument("--arch", metavar="PRESET",
                   help="microcnn preset giving the architecture of a weights-only KERAS_FILE (e.g. seed)")
    p.add_argument("--image-size", type=image_size, metavar="HxW",
                   help="input size in pixels (default: the Keras model's; required with --arch)")
    p.add_argument("--color", choices=("rgb", "grayscale"),
                   help="with --arch: the images' channels (default rgb)")
    p.add_argument("--rescale", default="1/255", metavar="FACTOR",
                   help="what the Keras model's inputs were multiplied by (default 1/255, as "
                        "ImageDataGenerator(rescale=1./255))")
    p.add_argument("--overwrite", action="store_true", help="replace a model already in --out")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    return run(PROG, _main, argv)


def parse_rescale(text):
    """"1/255", "0.00392156862745098" or "1" -> a positive float."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        value = 0.0
    if not 0 < value < float("inf"):
        raise UsageError(f"argument --rescale: expected a positive number or fraction such as 1/255, got {text!r}")
    return value


def fold_rescale(model, factor):
    """Make the model take pixel / 255 where the Keras model took pixel * rescale: multiply the first Conv2D's
    or Dense's kernel by rescale * 255. Exact when only layers that commute with a positive scale (pooling,
    Flatten, Dropout, ReLU) come before it; anything else is refused."""
    if abs(factor - 1.0) < 1e-12:  # 1/255 as a float times 255 is 0.9999999999999999
        return None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "Dense"):
            kernel = layer._weights["kernel"]
            kernel[...] = (kernel.astype(np.float64) * factor).astype(np.float32)
            return layer.name
        if kind not in ("MaxPooling2D", "Flatten", "Dropout", "ReLU", "GlobalAveragePooling2D") and not (
                kind == "Activation" and layer.activation in ("relu", "linear")):
            break
    raise RuntimeError(f"--rescale: cannot fold the input scale into this model (its first layer {kind} "
                       f"is not a Conv2D or Dense); import it with --rescale 1/255 and scale the images instead")


def _architecture(args, classes):
    from .. import available_presets, build_model

    if args.arch not in available_presets():
        raise UsageError(f"argument --arch: expected one of {', '.join(available_presets())}, got {args.arch!r}")
    if args.image_size is None:
        raise UsageError("argument --arch: needs --image-size HxW (a weights file does not record it)")
    channels = 1 if args.color == "grayscale" else 3
    return build_model(args.arch, (*args.image_size, channels), len(classes))


def _main(argv):
    args = parse(build_parser(), argv)
    classes = [c.strip() for c in args.classes.split(",")]
    if len(classes) < 2 or not all(classes) or len(set(classes)) != len(classes):
        raise UsageError(f"argument --classes: expected two or more distinct names separated by commas, "
                         f"got {args.classes!r}")
    if args.color is not None and args.arch is None:
        raise UsageError("argument --color: only with --arch (a Keras model file records its channels)")
    rescale = parse_rescale(args.rescale)
    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise RuntimeError(f"--out {args.out}: a model is already there (use --overwrite to replace it)")
    from ..images import PREPROCESSING_VERSION
    from ..keras_import import holds_only_weights, load_keras_model

    if args.arch is None and holds_only_weights(args.keras_file):
        raise RuntimeError(f"{args.keras_file}: holds only weights (Keras save_weights); give the architecture "
                           f"with --arch PRESET --image-size HxW, or a Keras model or .json file with this one as "
                           f"--weights")
    if args.arch is not None:
        if args.weights is not None:
            raise UsageError("argument --arch: the architecture is then the preset; KERAS_FILE is the weights "
                             "(drop --weights)")
        model = load_keras_model(_architecture(args, classes), weights=args.keras_file)
    else:
        model = load_keras_model(args.keras_file, weights=args.weights, input_shape=args.image_size)
    units = model.output_shape[-1]
    if len(model.output_shape) != 2 or units != len(classes):
        raise RuntimeError(f"--classes: the model has {units} outputs (shape {model.output_shape[1:]}), "
                           f"got {len(classes)} class names")
    h, w, channels = model.input_shape[1:]
    if channels not in (1, 3):
        raise RuntimeError(f"{args.keras_file}: the model takes {channels}-channel images; microcnn-predict "
                           f"reads grayscale (1) or RGB (3)")
    folded = fold_rescale(model, rescale * 255.0)
    preprocessing = {"version": PREPROCESSING_VERSION, "image_size": [h, w], "channels": channels,
                     "color": "grayscale" if channels == 1 else "rgb", "resample": "bilinear",
                     "high_depth_range": None}
    imported = model.metadata.get("imported_from")
    if args.arch is not None:
        imported = imported.replace("a microcnn architecture", f"preset {args.arch}")
    metadata = {"class_names": classes, "preprocessing": preprocessing,
                "imported_from": {"file": str(Path(args.keras_file).name), "format": imported,
                                  "rescale": args.rescale}}
    model.save(out, metadata=metadata, include_optimizer=False)
    print(f"Read {args.keras_file}: {imported}; {len(model.layers)} layers, {model.count_params():,} parameters")
    if folded:
        print(f"Input scale {args.rescale} folded into layer {folded!r} (microcnn feeds pixel / 255)")
    print(f"Wrote {out}/: classes {', '.join(classes)}; images {h}x{w} "
          f"{'grayscale' if channels == 1 else 'RGB'}, pixel / 255")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
