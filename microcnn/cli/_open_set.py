"""microcnn-train's open-set steps: the training images' kind (for predict's warnings) and the detector
fitted on the saved (best) weights and calibrated on the validation images."""

import itertools
import sys
import time

from ..batch_iterator import BatchIterator
from ..data import scan
from ..input_check import training_profile


def input_profile(dataset, validation_split, seed):
    """Bit depths, channel counts and size range of (a sample of) the training files."""
    try:
        _, splits, _ = scan(dataset, validation_split, seed)
    except (OSError, ValueError):
        return None  # the dataset reader reports these itself
    return training_profile([path for path, _ in splits["train"]], seed)


# Training images the detector is fitted on: a seeded sample beyond this. 10,000 estimate a covariance of a
# few hundred features well, and bound the extra inference pass (at most ~1/3 of an epoch of 30,000).
FIT_IMAGES = 10000


class _FirstBatches:
    """The first `count` batches of one shuffled pass (a seeded sample, without copying the images)."""

    def __init__(self, batches, count):
        self.batches, self.count = batches, count

    def __len__(self):
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.count)


def fit_detector(model, ds, validation, settings):
    """Fit the detector on (up to FIT_IMAGES of) the un-augmented training images and calibrate it on the
    validation images (on the training images when there are none, said on stderr); prints one line."""
    t0 = time.perf_counter()
    batch_size = settings["batch_size"]
    # shard=False: under MPI this runs on rank 0 alone and must see all the training images
    train = BatchIterator(ds.x_train, ds.y_train, batch_size, shuffle=True, seed=settings["seed"], shard=False)
    train = _FirstBatches(train, min(len(train), -(-FIT_IMAGES // batch_size)))
    accept, method = settings.get("accept", 0.95), settings.get("ood_method")
    options = {} if method is None else {"method": method}
    detector = model.fit_ood(train, validation_data=validation, accept=accept, batch_size=batch_size, **options)
    if validation is None:
        print("Open-set detector calibrated on the training images (no validation images): it will call "
              "more unseen images of the known classes unknown than --accept asks", file=sys.stderr)
    print(f"Open-set detector: {detector.method}, accepting {accept:.0%} of validation images (score >= "
          f"{detector.threshold:.4g}); fitted in {time.perf_counter() - t0:.1f} s", flush=True)
    return detector
