"""Run by tests/test_mpi.py under mpiexec (and in-process for the 1-process reference).

    python _mpi_worker.py fit DATASET CACHE OUT.npz   train on DATASET through the image cache; rank 0 saves
                                                      the weights and history
    python _mpi_worker.py kill DATASET CACHE          rank 1 kills itself (SIGKILL) during the third step
"""

import os
import signal
import sys

import numpy as np


def train(dataset, cache, kill_rank=None):
    import microcnn
    from microcnn import callbacks, layers
    from microcnn.augment import ImageAugmenter
    from microcnn.data import FolderDataset

    microcnn.set_seed(5)
    ds = FolderDataset(dataset, image_size=12, seed=1, cache=cache)
    model = microcnn.Sequential([
        layers.Input(ds.input_shape), layers.Conv2D(4, (3, 3), activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dropout(0.5),
        layers.Dense(ds.num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Batches of 11 from 45 images: the last one has 1 row, so rank 0 has none and adds zeros.
    train = ds.batches("train", batch_size=11, augmenter=ImageAugmenter(seed=2), seed=3)
    cbs = []
    if kill_rank is not None:
        from microcnn.distributed import world

        class Kill(callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if batch == 2 and world().rank == kill_rank:
                    os.kill(os.getpid(), signal.SIGKILL)

        cbs.append(Kill())
    history = model.fit(train, epochs=2, validation_data=ds.batches("validation", 10), callbacks=cbs, verbose=0)
    return model, history.history


if __name__ == "__main__":
    from microcnn import _core, distributed

    _core.set_num_threads(1)
    mode, dataset, cache = sys.argv[1:4]
    if mode == "fit":
        model, history = train(dataset, cache)
        if distributed.is_root():
            np.savez(sys.argv[4], *model.get_weights(), loss=np.array(history["loss"]),
                     val_loss=np.array(history["val_loss"]), accuracy=np.array(history["accuracy"]))
    else:
        train(dataset, cache, kill_rank=1)
