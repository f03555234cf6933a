"""microcnn-train's dataset reading (through the on-disk image cache, MPI-aware) and its per-epoch checkpoint
under MPI."""

import sys
from pathlib import Path

from .. import distributed
from ..cache import cache_usable, default_cache_dir
from ..callbacks import Callback
from ..data import FolderDataset


class EpochCheckpoint(Callback):
    """Under MPI, rank 0 saves the checkpoint after every epoch: Open MPI's mpiexec ends all ranks within
    a fraction of a second of Ctrl-C, too soon to save one then (SIGUSR1 stops the run with a checkpoint)."""

    def __init__(self, save):
        super().__init__()
        self.save = save

    def on_epoch_end(self, epoch, logs=None):
        if distributed.is_root():
            self.save()


def read_dataset(dataset, args, settings, split_seed, world):
    """FolderDataset through the image cache (unless --no-cache). Under MPI rank 0 decodes what the cache
    lacks while the others wait, then they read the cache rank 0 wrote."""
    folder = None
    root = world is None or world.rank == 0
    if not args.no_cache:
        folder = Path(args.cache) if args.cache else default_cache_dir(dataset)
        if root and not cache_usable(folder, sys.stderr):
            folder = None
    if world is not None and not world.bcast(folder is not None if root else None):
        folder = None  # rank 0 could not write the cache: every rank decodes into memory
    if world is not None and not root and folder is not None:
        world.barrier()
    size = settings["image_size"]
    ds = FolderDataset(dataset, image_size=size if size == "auto" else tuple(size), color=settings["color"],
                       validation_split=settings["validation_split"], seed=split_seed,
                       progress=decoding_progress if root else None, cache=folder, cache_update=root,
                       channels=settings["channel_select"], z_projection=settings["z_projection"])
    if world is not None and root and folder is not None:
        world.barrier()
    return ds


def decoding_progress(items, total, split):
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=f"Decoding {split}", unit="image", disable=None, leave=False,
                file=sys.stderr)
