"""microcnn-train's command line: its options, their help and the epilog (microcnn/cli/train.py runs it)."""

from ..data import COLOR_MODES
from ..ood import DEFAULT_METHOD, METHODS
from ..plots import PLOT_FORMATS
from ..presets import available_presets
from ..readers import Z_PROJECTIONS
from . import _augment_args
from ._common import (
    ArgumentParser,
    channel_list,
    fraction,
    help_formatter,
    image_size,
    non_negative_int,
    positive_float,
    positive_int,
)

PROG = "microcnn-train"
SCHEDULES = ("constant", "cosine", "plateau")


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
