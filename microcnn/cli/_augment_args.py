"""microcnn-train's augmentation options: --augment PRESET and the --aug-* settings that tune it."""

import argparse

from ._common import UsageError

FLIPS = {"none": {"horizontal_flip": False, "vertical_flip": False, "dihedral": False},
         "horizontal": {"horizontal_flip": True, "vertical_flip": False, "dihedral": False},
         "vertical": {"horizontal_flip": False, "vertical_flip": True, "dihedral": False},
         "both": {"horizontal_flip": True, "vertical_flip": True, "dihedral": False},
         "dihedral": {"horizontal_flip": False, "vertical_flip": False, "dihedral": True}}
# option -> (setting, metavar, help)
NUMBERS = {
    "--aug-rotation": ("rotation", "DEG", "free rotation up to +-DEG degrees"),
    "--aug-shear": ("shear", "DEG", "shear up to +-DEG degrees (Keras's convention)"),
    "--aug-zoom": ("zoom", "F", "zoom x and y independently by a factor in [1-F, 1+F]"),
    "--aug-blur": ("blur", "SIGMA", "Gaussian blur of sigma up to SIGMA pixels"),
    "--aug-gamma": ("gamma", "G", "gamma exp(+-G) (on positive values)"),
    "--aug-contrast": ("contrast", "F", "contrast x(1+-F) about each channel's mean"),
    "--aug-brightness": ("brightness", "B", "add +-B"),
    "--aug-noise": ("noise", "STD", "Gaussian noise of standard deviation up to STD"),
}


def _non_negative(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def add_arguments(p):
    from ..augment_presets import PRESETS

    p.add_argument("--augment", choices=list(PRESETS), default=None,
                   help="augmentation preset: seed (shear/zoom/horizontal flip, Keras's settings), microscopy "
                        "(8 flips/rotations, small rotation, intensity jitter, blur, noise) or none "
                        "(default seed)")
    p.add_argument("--no-augment", action="store_true", help="same as --augment none")
    p.add_argument("--aug-flip", choices=list(FLIPS), default=None,
                   help="flips: none, horizontal, vertical, both, or dihedral (the 8 flips/rotations by 90 deg)")
    p.add_argument("--aug-fill", choices=("nearest", "reflect", "constant"), default=None,
                   help="how pixels from outside the image are filled (constant: 0)")
    for option, (_, metavar, text) in NUMBERS.items():
        p.add_argument(option, type=_non_negative, default=None, metavar=metavar, help=text)


def augment_settings(args):
    """{"preset": ..., "overrides": {...}} from the command line (stored with the run's settings)."""
    if args.no_augment and args.augment not in (None, "none"):
        raise UsageError(f"--no-augment and --augment {args.augment} contradict each other; pass one")
    preset = "none" if args.no_augment else (args.augment or "seed")
    overrides = dict(FLIPS[args.aug_flip]) if args.aug_flip else {}
    if args.aug_fill:
        overrides["fill_mode"] = args.aug_fill
    for option, (setting, _, _) in NUMBERS.items():
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None:
            overrides[setting] = [1.0 - value, 1.0 + value] if setting == "zoom" else value
    if args.no_augment and overrides:
        raise UsageError("--no-augment turns augmentation off; the --aug-* settings need --augment seed or "
                         "microscopy (or --augment none to start from nothing)")
    if setting_error := _check(preset, overrides):
        raise UsageError(setting_error)
    return {"preset": preset, "overrides": overrides}


def _check(preset, overrides):
    from ..augment_presets import Augmentation

    try:
        Augmentation(preset, 0, **overrides)
    except (ValueError, TypeError) as e:
        return f"augmentation: {e}"
    return None


def build_augmentation(settings, seed):
    """The Augmentation of a run's settings, or None for none/identity."""
    from ..augment_presets import SETTINGS, Augmentation

    spec = settings.get("augment") or {"preset": "none" if settings.get("no_augment") else "seed", "overrides": {}}
    # A saved run holds the command line's {"preset", "overrides"}, or the full Augmentation.get_config().
    overrides = spec["overrides"] if "overrides" in spec else {k: spec[k] for k in SETTINGS if k in spec}
    aug = Augmentation(spec["preset"], seed, **overrides)
    return None if aug.is_identity else aug
