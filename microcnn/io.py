"""Model directories: `model.save(dirpath)` / `load_model(dirpath)`.

    <dirpath>/config.json            format version, microcnn version, model name, input shape, the layer list
                                     (class names + configs), compile config (optimizer, loss, metrics), the
                                     user's metadata (class names, preprocessing, ...), the save id, file list
    <dirpath>/weights.safetensors    every weight, named like "layers.0.conv2d.kernel", Keras layouts
    <dirpath>/optimizer.safetensors  optimizer state + iterations, for resuming (include_optimizer=True)

Nothing is pickled or evaluated: JSON and safetensors only, and loading validates every field, tensor name,
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

CONFIG = "config.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
PENDING = ".microcnn-pending"
STAGING_PREFIX = ".microcnn-staging-"
LAYER_STATE = "layer_state."  # prefix of the layers' training state (dropout counters) in the optimizer file
FORMAT = "microcnn.model"
FORMAT_VERSION = 1


# --- writing ---------------------------------------------------------------------------------------------
def _fsync_dir(path):
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync directories; the data files themselves were synced
    finally:
        os.close(fd)


def _write_file(path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.filename is None and e.errno is not None:  # ENOSPC from write() names no file: name it
            raise type(e)(e.errno, e.strerror or os.strerror(e.errno), path) from None
        raise


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
    for name in (WEIGHTS, OPTIMIZER, CONFIG):
        source = os.path.join(pending, name)
        if os.path.exists(source):
            os.replace(source, os.path.join(dirpath, name))
    _fsync_dir(dirpath)
    with open(os.path.join(dirpath, CONFIG), "rb") as f:
        files = json.loads(f.read()).get("files", [])
    stale = os.path.join(dirpath, OPTIMIZER)
    if OPTIMIZER not in files and os.path.exists(stale):
        os.remove(stale)
    os.rmdir(pending)
    _fsync_dir(dirpath)


def _json_metadata(metadata):
    if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
        raise TypeError(f"metadata: expected a dict with string keys, got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata: must be JSON-serialisable (str, number, bool, None, list, dict): {exc}") from None


def save_model(model, dirpath, metadata=None, include_optimizer=True, overwrite=True):
    from . import __version__

    model._require_built("save")
    metadata = _json_metadata(model.metadata if metadata is None else metadata)
    dirpath = os.fspath(dirpath)
    if os.path.exists(dirpath) and not os.path.isdir(dirpath):
        raise FileExistsError(f"{dirpath}: exists and is not a directory")
    os.makedirs(dirpath, exist_ok=True)
    _roll_forward(dirpath)
    _remove_dead_staging(dirpath)
    if not overwrite and os.path.exists(os.path.join(dirpath, CONFIG)):
        raise FileExistsError(f"{os.path.join(dirpath, CONFIG)}: a model is already saved here (overwrite=False)")

    save_id = uuid.uuid4().hex
    files = [WEIGHTS]
    optimizer_state = None
    if include_optimizer and model.compiled:
        optimizer_state = model.optimizer.get_state()
        optimizer_state["iterations"] = optimizer_state["iterations"].reshape(1)
        optimizer_state.update({LAYER_STATE + k: v for k, v in model.training_state().items()})
        files.append(OPTIMIZER)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "microcnn_version": __version__,
        "save_id": save_id,
        "files": files,
        "model": {"class_name": "Sequential", "config": model.get_config()},
        "compile": model.get_compile_config(),
        "metadata": metadata,
    }
    config_bytes = json.dumps(config, indent=2, allow_nan=False).encode("utf-8")

    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=dirpath)
    try:
        _write_file(os.path.join(staging, WEIGHTS), _safetensors_bytes(model.named_weights(), save_id, "weights"))
        if optimizer_state is not None:
            _write_file(os.path.join(staging, OPTIMIZER), _safetensors_bytes(optimizer_state, save_id, "optimizer"))
        _write_file(os.path.join(staging, CONFIG), config_bytes)
        _fsync_dir(staging)
        os.rename(staging, os.path.join(dirpath, PENDING))  # the commit point
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(dirpath)
    _roll_forward(dirpath)
    model.metadata = metadata


def save_weights(model, filepath, overwrite=True):
    """One safetensors file, written to a temporary name beside it, synced, then renamed over the target."""
    model._require_built("save_weights")
    filepath = os.fspath(filepath)
    if os.path.isdir(filepath):
        raise IsADirectoryError(f"{filepath}: is a directory (save_weights writes one file; use save() for a "
                                f"model directory)")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"{filepath}: exists (overwrite=False)")
    data = _safetensors_bytes(model.named_weights(), uuid.uuid4().hex, "weights")
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(filepath) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        _write_file(tmp, data)
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def load_weights(model, filepath):
    """Weights from a save_weights file or a model directory; all names, dtypes and shapes must match."""
    model._require_built("load_weights")
    filepath = os.fspath(filepath)
    save_id = None
    if os.path.isdir(filepath):
        paths = _resolve(filepath)
        save_id = _read_config(paths[CONFIG])["save_id"]
        filepath = paths[WEIGHTS]
    # Matched by position and weight name, as Keras does: the layer names in the file need not match.
    def by_position(name):
        parts = name.split(".")
        return f"{parts[0]}.{parts[1]}.{parts[-1]}" if len(parts) >= 4 else name

    tensors = {by_position(k): v for k, v in _read_safetensors(filepath, save_id, "weights").items()}
    live = {by_position(k): v for k, v in model.named_weights().items()}
    _check_tensors(filepath, tensors, {k: (v.shape, np.float32) for k, v in live.items()}, "this model")
    for name, value in live.items():
        np.copyto(value, tensors[name])


# --- reading ---------------------------------------------------------------------------------------------
def _resolve(dirpath):
    """Where each file of the current model is: in the committed-but-unfinished save, else in dirpath."""
    pending = os.path.join(dirpath, PENDING)
    paths = {}
    for name in (CONFIG, WEIGHTS, OPTIMIZER):
        candidate = os.path.join(pending, name)
        paths[name] = candidate if os.path.isfile(candidate) else os.path.join(dirpath, name)
    return paths


def _read_bytes(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing (not a complete microcnn model directory)")
    with open(path, "rb") as f:
        return f.read()


def _fail(path, problem):
    raise ValueError(f"{path}: {problem}")


def _read_config(path):
    try:
        config = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also a number too long to convert
        _fail(path, f"not valid JSON ({exc})")
    except RecursionError:
        _fail(path, "not valid JSON (nested too deeply)")
    if not isinstance(config, dict):
        _fail(path, f"expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        _fail(path, f"not a microcnn model config (format {config.get('format')!r}, expected {FORMAT!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        _fail(path, f"format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        newer = " (written by a newer microcnn; upgrade to read it)" if version > FORMAT_VERSION else ""
        _fail(path, f"unsupported format_version {version}; this microcnn reads version {FORMAT_VERSION}{newer}")
    if not isinstance(config.get("save_id"), str) or not config["save_id"]:
        _fail(path, "missing save_id")
    files = config.get("files")
    if not isinstance(files, list) or WEIGHTS not in files or not set(files) <= {WEIGHTS, OPTIMIZER}:
        _fail(path, f"'files' must list {WEIGHTS!r} (and optionally {OPTIMIZER!r}), got {files!r}")
    model = config.get("model")
    if not isinstance(model, dict) or model.get("class_name") != "Sequential" \
            or not isinstance(model.get("config"), dict):
        _fail(path, "'model' must be {'class_name': 'Sequential', 'config': {...}}")
    if not isinstance(config.get("metadata", {}), dict):
        _fail(path, f"'metadata' must be an object, got {config.get('metadata')!r}")
    if config.get("compile") is not None and not isinstance(config["compile"], dict):
        _fail(path, f"'compile' must be an object or null, got {config['compile']!r}")
    return config


def _build_model(path, model_config):
    from . import layers as _layers
    from .layers.base import skip_initialization
    from .model import Sequential

    name = model_config.get("name")
    if not isinstance(name, str) or not name:
        _fail(path, f"model name must be a non-empty string, got {name!r}")
    input_shape = model_config.get("input_shape")
    if not isinstance(input_shape, list) or not input_shape or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape):
        _fail(path, f"input_shape must be a list of positive integers, got {input_shape!r}")
    layer_specs = model_config.get("layers")
    if not isinstance(layer_specs, list) or not layer_specs:
        _fail(path, f"'layers' must be a non-empty list, got {layer_specs!r}")
    model = Sequential(name=name)
    model.add(_layers.Input(tuple(input_shape)))
    # The weights are read next: skip the random initialisation (time, and draws from the global generator).
    with skip_initialization():
        for i, spec in enumerate(layer_specs):
            try:
                model.add(_layers.deserialize(spec))
            except (ValueError, TypeError) as exc:
                _fail(path, f"layer {i}: {exc}")
            except MemoryError:
                _fail(path, f"layer {i}: its weights are too large to allocate ({spec.get('config')})")
    return model


def _read_safetensors(path, save_id, content):
    """-> {name: array}, after checking the header, the save id and that every tensor is intact."""
    data = _read_bytes(path)
    if len(data) < 8:
        _fail(path, f"truncated safetensors file ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        _fail(path, f"truncated or corrupt safetensors file (header of {header_len} bytes, file of {len(data)})")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"corrupt safetensors header ({exc})")
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("content") != content:
        _fail(path, f"not a microcnn {content} file (metadata {meta!r})")
    if save_id is not None and meta.get("save_id") != save_id:
        raise MixedSaveError(f"{path}: belongs to a different save than {CONFIG} (save id "
                             f"{meta.get('save_id')!r}, expected {save_id!r}): the directory mixes files of two saves")
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        _fail(path, f"corrupt or truncated safetensors data ({exc})")
    return tensors


def _check_tensors(path, tensors, expected, what="the model in config.json"):
    """`expected`: {name: (shape, dtype)}. Names must match exactly, shapes and dtypes too."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        _fail(path, f"tensors do not match {what}: "
                    + "; ".join(filter(None, [missing and f"missing {missing}", extra and f"unexpected {extra}"])))
    for name, (shape, dtype) in expected.items():
        value = tensors[name]
        if value.dtype != dtype:
            _fail(path, f"tensor {name!r} has dtype {value.dtype}, expected {np.dtype(dtype)}")
        if tuple(value.shape) != tuple(shape):
            _fail(path, f"tensor {name!r} has shape {tuple(value.shape)}, but {what} needs {tuple(shape)}")
        _check_finite(path, name, value)


def _check_finite(path, name, value):
    if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
        bad = int(np.count_nonzero(~np.isfinite(value)))
        _fail(path, f"tensor {name!r} holds {bad} non-finite value(s) (NaN or Inf): the file is damaged or was "
                    f"saved from a diverged training run")


class MixedSaveError(ValueError):
    """The files read belong to different saves (as while another process saves into the directory)."""


LOAD_ATTEMPTS = 20


def load_model(dirpath, compile=True):
    """Rebuild a model saved with `model.save(dirpath)`: architecture, weights, `model.metadata`, and (with
    compile=True) the compiled optimizer, loss and metrics with the optimizer state for resuming.

    A save by another process moves files while they are read: a file that vanishes or files of two saves
    mean that a save was rolling forward, so the load starts again (up to LOAD_ATTEMPTS times, a few
    milliseconds apart) and returns one committed save, whole."""
    dirpath = os.fspath(dirpath)
    if not os.path.exists(dirpath):
        raise FileNotFoundError(f"{dirpath}: no such model directory")
    if not os.path.isdir(dirpath):
        raise NotADirectoryError(f"{dirpath}: not a directory (a microcnn model is a directory)")
    for attempt in range(LOAD_ATTEMPTS):
        try:
            return _load_model_once(dirpath, compile)
        except (FileNotFoundError, MixedSaveError):
            if attempt == LOAD_ATTEMPTS - 1:
                raise
            time.sleep(0.005 * (attempt + 1))


def _load_model_once(dirpath, compile):
    from . import optimizers as _optimizers

    paths = _resolve(dirpath)
    config = _read_config(paths[CONFIG])
    model = _build_model(paths[CONFIG], config["model"]["config"])
    save_id = config["save_id"]

    weights = _read_safetensors(paths[WEIGHTS], save_id, "weights")
    live = model.named_weights()
    _check_tensors(paths[WEIGHTS], weights, {k: (v.shape, np.float32) for k, v in live.items()})
    for name, value in live.items():
        np.copyto(value, weights[name])
    model.metadata = config.get("metadata", {})

    compile_config = config.get("compile")
    if compile and compile_config is not None:
        try:
            model.compile(optimizer=_optimizers.deserialize(compile_config.get("optimizer")),
                          loss=compile_config.get("loss"), metrics=compile_config.get("metrics"))
        except (ValueError, TypeError) as exc:
            _fail(paths[CONFIG], f"bad compile config: {exc}")
        if OPTIMIZER in config["files"]:
            state = _read_safetensors(paths[OPTIMIZER], save_id, "optimizer")
            iterations = state.get("iterations")
            if iterations is None or iterations.shape != (1,) or iterations.dtype != np.int64:
                _fail(paths[OPTIMIZER], "missing or malformed 'iterations' tensor (expected int64 of shape (1,))")
            state["iterations"] = iterations.reshape(())
            layer_state = {k[len(LAYER_STATE):]: state.pop(k) for k in list(state) if k.startswith(LAYER_STATE)}
            _check_tensors(paths[OPTIMIZER], layer_state,
                           {k: (v.shape, v.dtype) for k, v in model.training_state().items()})
            model.set_training_state(layer_state)
            for name, value in state.items():
                if name != "iterations" and value.dtype != np.float32:
                    _fail(paths[OPTIMIZER], f"tensor {name!r} has dtype {value.dtype}, expected float32")
                _check_finite(paths[OPTIMIZER], name, value)
            try:
                model.optimizer.set_state(state, live)
            except ValueError as exc:
                _fail(paths[OPTIMIZER], str(exc))
    return model
