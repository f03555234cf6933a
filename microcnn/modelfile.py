"""The model file format: directories of JSON and safetensors, as bytes and dicts. This module knows nothing
of the model class; `Sequential.save` / `microcnn.load_model` (model.py) turn models into these dicts and back.

    <dirpath>/config.json            format version, microcnn version, the model's config (name, input shape,
                                     the layer list: class names + configs), compile config (optimizer, loss,
                                     metrics), the user's metadata (class names, preprocessing, ...), the save
                                     id, the file list
    <dirpath>/weights.safetensors    every weight, named like "layers.0.conv2d.kernel", Keras layouts
    <dirpath>/optimizer.safetensors  optimizer state + iterations, for resuming (include_optimizer=True)
    <dirpath>/ood.safetensors        the open-set detector's tensors when it has one (settings: config "ood")

Nothing is pickled or evaluated: JSON and safetensors only, and reading validates every field, tensor name,
dtype and shape, raising ValueError (bad content) or OSError (missing/unreadable) naming the file.

Atomic saves. A directory cannot be renamed over a non-empty one, and other files may live in it (the
training CLI keeps history.csv and plots there), so the swap happens file by file behind a commit point:

1. write all new files into `<dirpath>/.microcnn-staging-<pid>-*` and fsync them;
2. rename that directory to `<dirpath>/.microcnn-pending` -- the commit point (one atomic rename);
3. roll forward: os.replace each file into <dirpath> (config.json last), delete a stale optimizer file, then
   remove the empty pending directory.

Every file carries the save id of its save. A reader takes each file from `.microcnn-pending` when it is
there and from <dirpath> otherwise, so a crash before step 2 leaves the previous model (the partial staging
directory is ignored and removed by the next save), and a crash after it leaves the new one, complete; the
next save finishes an interrupted roll-forward first. Readers never modify the directory. Two processes
saving into the same directory at the same time is not supported.
"""

import json
import os
import shutil
import struct
import tempfile
import time
import uuid

import numpy as np

from ._atomic import fsync_dir, write_atomic, write_synced
from ._version import __version__

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
OOD = "ood.safetensors"  # the open-set detector (microcnn/ood.py); config.json's "ood" entry holds its settings
PENDING = ".microcnn-pending"
STAGING_PREFIX = ".microcnn-staging-"
LAYER_STATE = "layer_state."  # prefix of the layers' training state (dropout counters) in the optimizer file
FORMAT = "microcnn.model"
FORMAT_VERSION = 1


# --- writing ---------------------------------------------------------------------------------------------
def _safetensors_bytes(tensors, save_id, content):
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={"format": FORMAT, "content": content, "save_id": save_id})


def _remove_dead_staging(dirpath):
    """Staging directories left by a save that crashed (its process is gone) are incomplete: delete them."""
    if os.name != "posix":
        return  # no harmless liveness probe (os.kill would terminate); a stale staging dir is only clutter
    for entry in os.listdir(dirpath):
        if not entry.startswith(STAGING_PREFIX):
            continue
        try:
            pid = int(entry[len(STAGING_PREFIX):].split("-")[0])
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except (ValueError, ProcessLookupError):
            alive = False
        except OSError:
            alive = True  # exists but is not ours to signal
        if not alive:
            shutil.rmtree(os.path.join(dirpath, entry), ignore_errors=True)


def _roll_forward(dirpath):
    """Finish a committed save: move the pending files into place, config.json last."""
    pending = os.path.join(dirpath, PENDING)
    if not os.path.isdir(pending):
        return
    for name in (WEIGHTS, OPTIMIZER, OOD, CONFIG):
        source = os.path.join(pending, name)
        if os.path.exists(source):
            os.replace(source, os.path.join(dirpath, name))
    fsync_dir(dirpath)
    with open(os.path.join(dirpath, CONFIG), "rb") as f:
        files = json.loads(f.read()).get("files", [])
    for optional in (OPTIMIZER, OOD):
        stale = os.path.join(dirpath, optional)
        if optional not in files and os.path.exists(stale):
            os.remove(stale)
    os.rmdir(pending)
    fsync_dir(dirpath)


def json_metadata(metadata):
    """`metadata` as plain JSON values (a copy); TypeError naming what cannot be stored."""
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata: expected a dict with string keys, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata: must be JSON-serialisable (str, number, bool, None, list, dict): {exc}") from None


def save_model(dirpath, model_config, compile_config, metadata, weights, optimizer_state=None, overwrite=True,
               ood=None):
    """Write a model directory atomically. `model_config`: {"class_name", "config"}; `weights` and
    `optimizer_state` (or None): {name: array}; `ood`: None or (config entry, {name: array}) of the open-set
    detector. Returns the stored metadata (as JSON values)."""
    metadata = json_metadata(metadata)
    dirpath = os.fspath(dirpath)
    if os.path.exists(dirpath) and not os.path.isdir(dirpath):
        raise FileExistsError(f"{dirpath}: exists and is not a directory")
    os.makedirs(dirpath, exist_ok=True)
    _roll_forward(dirpath)
    _remove_dead_staging(dirpath)
    if not overwrite and os.path.exists(os.path.join(dirpath, CONFIG)):
        raise FileExistsError(f"{os.path.join(dirpath, CONFIG)}: a model is already saved here (overwrite=False)")

    save_id = uuid.uuid4().hex
    files = [WEIGHTS] + ([OPTIMIZER] if optimizer_state is not None else []) + ([OOD] if ood is not None else [])
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "microcnn_version": __version__,
        "save_id": save_id,
        "files": files,
        "model": model_config,
        "compile": compile_config,
        "metadata": metadata,
    }
    if ood is not None:
        config["ood"] = ood[0]
    config_bytes = json.dumps(config, indent=2, allow_nan=False).encode("utf-8")

    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=dirpath)
    try:
        write_synced(os.path.join(staging, WEIGHTS), _safetensors_bytes(weights, save_id, "weights"))
        if optimizer_state is not None:
            write_synced(os.path.join(staging, OPTIMIZER), _safetensors_bytes(optimizer_state, save_id, "optimizer"))
        if ood is not None:
            write_synced(os.path.join(staging, OOD), _safetensors_bytes(ood[1], save_id, "ood"))
        write_synced(os.path.join(staging, CONFIG), config_bytes)
        fsync_dir(staging)
        os.rename(staging, os.path.join(dirpath, PENDING))  # the commit point
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(dirpath)
    _roll_forward(dirpath)
    return metadata


def save_weights(filepath, weights, overwrite=True):
    """One safetensors file of `weights` ({name: array}), replacing `filepath` atomically."""
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath):
        raise IsADirectoryError(f"{filepath}: is a directory (save_weights writes one file; use save() for a "
                                f"model directory)")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath}: exists (overwrite=False)")
    write_atomic(filepath, _safetensors_bytes(weights, uuid.uuid4().hex, "weights"))


# --- reading ---------------------------------------------------------------------------------------------
def _resolve(dirpath):
    """Where each file of the current model is: in the committed-but-unfinished save, else in dirpath."""
    pending = os.path.join(dirpath, PENDING)
    paths = {}
    for name in (CONFIG, WEIGHTS, OPTIMIZER, OOD):
        candidate = os.path.join(pending, name)
        paths[name] = candidate if os.path.isfile(candidate) else os.path.join(dirpath, name)
    return paths


def _read_bytes(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing (not a complete microcnn model directory)")
    with open(path, "rb") as f:
        return f.read()


class MixedSaveError(ValueError):
    """The files read belong to different saves (as while another process saves into the directory)."""


LOAD_ATTEMPTS = 20


def read_consistently(dirpath, read):
    """read() -> its result. A save by another process moves files while they are read: a file that vanishes,
    or files of two saves, mean a save was rolling forward, so read() starts again (up to LOAD_ATTEMPTS times,
    a few milliseconds apart) and returns what one committed save holds, whole."""
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return read()
        except (FileNotFoundError, MixedSaveError):
            if attempt == LOAD_ATTEMPTS - 1 or not os.path.isdir(dirpath):
                raise
            time.sleep(0.005 * (attempt + 1))
    raise AssertionError("unreachable")


def fail(path, problem):
    """Raise the ValueError for bad content: "<path>: <problem>"."""
    raise ValueError(f"{path}: {problem}")


def _read_config(path):
    try:
        config = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also a number too long to convert
        fail(path, f"not valid JSON ({exc})")
    except RecursionError:
        fail(path, "not valid JSON (nested too deeply)")
    if not isinstance(config, dict):
        fail(path, f"expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        fail(path, f"not a microcnn model config (format {config.get('format')!r}, expected {FORMAT!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        fail(path, f"format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        newer = " (written by a newer microcnn; upgrade to read it)" if version > FORMAT_VERSION else ""
        fail(path, f"unsupported format_version {version}; this microcnn reads version {FORMAT_VERSION}{newer}")
    if not isinstance(config.get("save_id"), str) or not config["save_id"]:
        fail(path, "missing save_id")
    files = config.get("files")
    if not isinstance(files, list) or WEIGHTS not in files or not set(files) <= {WEIGHTS, OPTIMIZER, OOD}:
        fail(path, f"'files' must list {WEIGHTS!r} (and optionally {OPTIMIZER!r}, {OOD!r}), got {files!r}")
    if (config.get("ood") is not None) != (OOD in files):
        fail(path, f"'ood' and the listing of {OOD!r} in 'files' must come together")
    model = config.get("model")
    if not isinstance(model, dict) or model.get("class_name") != "Sequential" \
            or not isinstance(model.get("config"), dict):
        fail(path, "'model' must be {'class_name': 'Sequential', 'config': {...}}")
    if not isinstance(config.get("metadata", {}), dict):
        fail(path, f"'metadata' must be an object, got {config.get('metadata')!r}")
    if config.get("compile") is not None and not isinstance(config["compile"], dict):
        fail(path, f"'compile' must be an object or null, got {config['compile']!r}")
    return config


def _read_safetensors(path, save_id, content):
    """-> {name: array}, after checking the header, the save id and that every tensor is intact."""
    data = _read_bytes(path)
    if len(data) < 8:
        fail(path, f"truncated safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        fail(path, f"truncated or corrupt safetensors file (header of {header_len} bytes, file of {len(data)})")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(path, f"corrupt safetensors header ({exc})")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("content") != content:
        fail(path, f"not a microcnn {content} file (metadata {meta!r})")
    if save_id is not None and meta.get("save_id") != save_id:
        raise MixedSaveError(f"{path}: belongs to a different save than {CONFIG} (save id "
                             f"{meta.get('save_id')!r}, expected {save_id!r}): the directory mixes files of two saves")
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        fail(path, f"corrupt or truncated safetensors data ({exc})")
    return tensors


def check_tensors(path, tensors, expected, what="the model in config.json"):
    """`expected`: {name: (shape, dtype)}. Names must match exactly, shapes and dtypes too."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        fail(path, f"tensors do not match {what}: "
                   + "; ".join(filter(None, [missing and f"missing {missing}", extra and f"unexpected {extra}"])))
    for name, (shape, dtype) in expected.items():
        value = tensors[name]
        if value.dtype != dtype:
            fail(path, f"tensor {name!r} has dtype {value.dtype}, expected {np.dtype(dtype)}")
        if tuple(value.shape) != tuple(shape):
            fail(path, f"tensor {name!r} has shape {tuple(value.shape)}, but {what} needs {tuple(shape)}")
        check_finite(path, name, value)


def check_finite(path, name, value):
    if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
        bad = int(np.count_nonzero(~np.isfinite(value)))
        fail(path, f"tensor {name!r} holds {bad} non-finite value(s) (NaN or Inf): the file is damaged or was "
                   f"saved from a diverged training run")


class SavedModel:
    """A model directory opened for reading: `config` (validated dict) and its files' paths; the tensors are
    read on request, after the caller has checked the config."""

    def __init__(self, dirpath):
        dirpath = os.fspath(dirpath)
        if not os.path.exists(dirpath):
            raise FileNotFoundError(f"{dirpath}: no such model directory")
        if not os.path.isdir(dirpath):
            raise NotADirectoryError(f"{dirpath}: not a directory (a microcnn model is a directory)")
        paths = _resolve(dirpath)
        self.config_path, self.weights_path, self.optimizer_path = paths[CONFIG], paths[WEIGHTS], paths[OPTIMIZER]
        self.ood_path = paths[OOD]
        self.config = _read_config(self.config_path)

    def weights(self):
        return _read_safetensors(self.weights_path, self.config["save_id"], "weights")

    def ood(self):
        """-> (the config's "ood" entry, {name: array}) of the open-set detector, or None if it has none."""
        if self.config.get("ood") is None:
            return None
        return self.config["ood"], _read_safetensors(self.ood_path, self.config["save_id"], "ood")

    def optimizer_state(self):
        """-> (optimizer state with a scalar "iterations", {layer state name: array}) or None if not saved."""
        if OPTIMIZER not in self.config["files"]:
            return None
        state = _read_safetensors(self.optimizer_path, self.config["save_id"], "optimizer")
        iterations = state.get("iterations")
        if iterations is None or iterations.shape != (1,) or iterations.dtype != np.int64:
            fail(self.optimizer_path, "missing or malformed 'iterations' tensor (expected int64 of shape (1,))")
        state["iterations"] = iterations.reshape(())
        layer_state = {k[len(LAYER_STATE):]: state.pop(k) for k in list(state) if k.startswith(LAYER_STATE)}
        for name, value in state.items():
            if name != "iterations" and value.dtype != np.float32:
                fail(self.optimizer_path, f"tensor {name!r} has dtype {value.dtype}, expected float32")
            check_finite(self.optimizer_path, name, value)
        return state, layer_state


def optimizer_tensors(optimizer_state, layer_state):
    """The optimizer file's tensors: the optimizer state ("iterations" as int64 (1,)) and the layers' state."""
    tensors = dict(optimizer_state)
    tensors["iterations"] = np.asarray(tensors["iterations"], np.int64).reshape(1)
    tensors.update({LAYER_STATE + k: v for k, v in layer_state.items()})
    return tensors


def read_weights(filepath):
    """-> (path read, {name: array}) from a save_weights file or a model directory's weights."""
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath):
        saved = SavedModel(filepath)
        return saved.weights_path, saved.weights()
    return filepath, _read_safetensors(filepath, None, "weights")
