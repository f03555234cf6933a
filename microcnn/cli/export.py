"""microcnn-export MODEL_DIR OUT.onnx: write a trained model as an ONNX file (see microcnn/onnx_export.py).

After writing, the file is run with ONNX Runtime when it is installed, on a few random images, and its
probabilities compared with microcnn's.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from ._common import EXIT_ERROR, EXIT_OK, ArgumentParser, help_formatter, parse, run

PROG = "microcnn-export"
CHECK_IMAGES = 4
CHECK_TOLERANCE = 1e-4  # float32 rounding differences are ~1e-7; anything near this is a wrong graph
EPILOG = """\
the ONNX file:
  input  "input": float32 (batch, height, width, channels) -- NHWC, as microcnn -- or (batch, channels,
         height, width) with --input-layout NCHW; pixels scaled as microcnn-train did (8-bit: value / 255)
  output "probabilities": float32 (batch, classes), classes in the order of the class_names metadata
  metadata_props: class_names, preprocessing, preprocessing_rule, input_layout, output, ood (if the model
         has an open-set detector), microcnn_version -- JSON or plain text

needs the onnx package (pip install 'microcnn[onnx]'); with onnxruntime installed too, the file is checked
against microcnn on random images after writing (--no-check skips that).

exit status: 0 written (and checked), 1 failure (named on stderr), 2 bad command line
"""


def build_parser():
    from ..onnx_export import DEFAULT_OPSET

    p = ArgumentParser(prog=PROG, description="Export a model folder written by microcnn-train to ONNX.",
                       epilog=EPILOG, formatter_class=help_formatter)
    p.add_argument("model", metavar="MODEL_DIR", help="model folder written by microcnn-train or microcnn-import")
    p.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write (replaced atomically)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--batch", default="dynamic", metavar="dynamic|N",
                   help="batch dimension: 'dynamic' (default) or a fixed number of images")
    p.add_argument("--input-layout", choices=("NHWC", "NCHW"), default="NHWC",
                   help="layout of the input tensor (default NHWC, as microcnn)")
    p.add_argument("--no-fold-batchnorm", action="store_true",
                   help="keep BatchNormalization nodes instead of folding them into the convolution before")
    p.add_argument("--no-check", action="store_true", help="do not compare with ONNX Runtime after writing")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv=None):
    return run(PROG, _main, argv)


def _batch(text, parser):
    if text == "dynamic":
        return "dynamic"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        parser.error(f"argument --batch: expected 'dynamic' or a positive integer, got {text!r}")
    return value


def check_with_onnxruntime(model, path, input_layout, batch):
    """(onnxruntime version, largest |difference| of the outputs) on random images in [0, 1], or None when
    onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    n = batch if isinstance(batch, int) else CHECK_IMAGES
    x = np.random.default_rng(0).random((n, *model.input_shape[1:]), dtype=np.float32)
    expected = model.predict(x, batch_size=n)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x if input_layout == "NHWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    (got,) = session.run(None, {"input": feed})
    return onnxruntime.__version__, float(np.max(np.abs(got - expected)))


def _main(argv):
    parser = build_parser()
    args = parse(parser, argv)
    batch = _batch(args.batch, parser)
    from .. import load_model
    from ..onnx_export import export_model

    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise RuntimeError(f"{args.model}: no such model folder")
    model = load_model(model_dir, compile=False)
    try:
        proto = export_model(model, args.output, opset=args.opset, batch=batch, input_layout=args.input_layout,
                             fold_batchnorm=not args.no_fold_batchnorm)
    except ValueError as exc:
        raise RuntimeError(f"{args.output}: {exc}") from None
    output = proto.graph.output[0]
    dims = [d.dim_param or str(d.dim_value) for d in proto.graph.input[0].type.tensor_type.shape.dim]
    out_dims = [d.dim_param or str(d.dim_value) for d in output.type.tensor_type.shape.dim]
    size = os.path.getsize(args.output)
    print(f"Wrote {args.output} ({size / 1e6:.1f} MB): opset {args.opset}, {len(proto.graph.node)} nodes, "
          f"input \"input\" float32 {args.input_layout} ({', '.join(dims)}), output \"{output.name}\" "
          f"({', '.join(out_dims)})")
    props = {p.key: p.value for p in proto.metadata_props}
    if "class_names" in props:
        print(f"Classes: {', '.join(json.loads(props['class_names']))}")
    print(f"Preprocessing: {props['preprocessing_rule']}")
    if "ood" in props:
        ood = json.loads(props["ood"])
        print(f"Open-set detector recorded: {ood.get('method')}, threshold {ood.get('threshold')}")
    if args.no_check:
        return EXIT_OK
    checked = check_with_onnxruntime(model, args.output, args.input_layout, batch)
    if checked is None:
        print("Not checked: onnxruntime is not installed (pip install 'microcnn[onnx]')")
        return EXIT_OK
    version, difference = checked
    n = batch if isinstance(batch, int) else CHECK_IMAGES
    print(f"Checked with ONNX Runtime {version}: largest difference from microcnn {difference:.1e} "
          f"over {n} random image{'s' if n != 1 else ''}")
    if not difference <= CHECK_TOLERANCE:
        print(f"{PROG}: error: {args.output}: ONNX Runtime's outputs differ from microcnn's by {difference:.2e} "
              f"(more than {CHECK_TOLERANCE:g})", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
