"""`image_dataset_from_directory`: Keras's folder loader for microcnn. One class per sub-folder (or
`train/` and `validation/` folders of class folders); every image is decoded once, resized and scaled exactly
as `microcnn-predict` will scale new images (8-bit values / 255, 16-bit and float images by the training
set's range), so what `fit` sees is what prediction sees.

    train, val = microcnn.image_dataset_from_directory("dataset/", image_size=150, validation_split=0.2)
    model.fit(train, validation_data=val, epochs=10)
    train.class_names            # ["cats", "dogs"]: the order of the model's outputs

(`microcnn.FolderDataset` underneath keeps its arrays as decoded, uint8 for 8-bit images: the batches, not
`x_train`, are the model's input.)
"""

from .data import FolderDataset

SUBSETS = ("both", "training", "validation")


def image_dataset_from_directory(directory, image_size=150, batch_size=32, color_mode="auto",
                                 validation_split=None, subset="both", seed=0, shuffle=True):
    """-> (train, validation) batch sources (or one of them, with subset="training" / "validation").

    Each is re-iterable once per epoch (reshuffled each time when `shuffle`; validation is never shuffled),
    yields (x float32 (batch, height, width, channels), y int32 class indices) and has `len()` (batches),
    `class_names`, `preprocessing` (the dict `model.save(..., metadata={"preprocessing": ...})` can keep for
    prediction) and `report` (files found, skipped and why). `image_size`: an int or (height, width);
    `color_mode`: "auto" (grayscale if every training image is), "grayscale" or "rgb"; `validation_split`: the
    fraction of each class held out when the folder has no validation/ folder (stratified, seeded by `seed`).
    Use loss="sparse_categorical_crossentropy" with these integer labels.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset: expected one of {', '.join(map(repr, SUBSETS))}, got {subset!r}")
    dataset = FolderDataset(directory, image_size=image_size, color=color_mode, validation_split=validation_split,
                            seed=seed)

    def source(split):
        batches = dataset.batches(split, batch_size, shuffle=shuffle and split == "train", seed=seed)
        batches.class_names = list(dataset.class_names)
        batches.preprocessing = dict(dataset.preprocessing)
        batches.report = dataset.report
        return batches

    if subset == "training":
        return source("train")
    if subset == "validation":
        return source("validation")
    return source("train"), source("validation")
