"""Copy a Keras model file without its optimizer state (the test fixtures in tests/fixtures/keras/).

    python scripts/trim_keras_fixture.py SOURCE DEST

HDF5 files (.h5, .weights.h5) lose their optimizer_weights/ (Keras 2, legacy) or optimizer/ (Keras 3) group;
a .keras zip is rewritten with its model.weights.h5 trimmed the same way. Everything else -- the model
config, root attributes, layer groups and their attributes -- is copied unchanged. The optimizer state is
two thirds of such a file and microcnn never reads it.
"""

import io
import sys
import zipfile

import h5py

OPTIMIZER_GROUPS = ("optimizer_weights", "optimizer")


def trim_hdf5(source, dest):
    with h5py.File(source, "r") as src, h5py.File(dest, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            if name not in OPTIMIZER_GROUPS:
                src.copy(src[name], dst, name=name)


def trim_zip(source, dest):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".h5"):
                with h5py.File(io.BytesIO(data), "r") as f, io.BytesIO() as buffer:
                    with h5py.File(buffer, "w") as out:
                        for key, value in f.attrs.items():
                            out.attrs[key] = value
                        for name in f:
                            if name not in OPTIMIZER_GROUPS:
                                f.copy(f[name], out, name=name)
                    data = buffer.getvalue()
            dst.writestr(info, data)


def main(source, dest):
    (trim_zip if zipfile.is_zipfile(source) else trim_hdf5)(source, dest)


if __name__ == "__main__":
    main(*sys.argv[1:3])
