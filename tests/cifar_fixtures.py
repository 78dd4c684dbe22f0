"""Write tiny CIFAR-10 fixtures in the official python layout, for tests.

The fixtures have the same files and pickle fields as ``cifar-10-python.tar.gz``:
``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and ``batches.meta`` in a
``cifar-10-batches-py`` folder, pickled with protocol 2 like the official files. They differ
only in size (``n_per_batch`` rows per batch) and in their random pixels and labels.

The module uses absolute imports only, so tests can import it as ``tests.cifar_fixtures``
or, with ``tests`` on ``sys.path``, as ``cifar_fixtures``.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

FOLDER_NAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
BATCH_NAMES = TRAIN_BATCHES + (TEST_BATCH,)
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
N_FEATURES = 3072
KEY_TYPES = ("bytes", "str")


def make_cifar_arrays(n_per_batch: int = 20, seed: int = 0) -> dict:
    """Generate the pixels and labels that the fixture writers store.

    Parameters
    ----------
    n_per_batch : int
        Rows per batch, the same for the five training batches and the test batch.
    seed : int
        Seed of the NumPy random generator. Equal seeds give equal arrays.

    Returns
    -------
    dict
        Maps each batch name (``"data_batch_1"`` ... ``"test_batch"``) to a pair
        ``(data, labels)``: ``data`` is a uint8 array of shape ``(n_per_batch, 3072)`` and
        ``labels`` is a list of ``n_per_batch`` ints in 0..9.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for name in BATCH_NAMES:
        data = rng.integers(0, 256, size=(n_per_batch, N_FEATURES), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(0, 10, size=n_per_batch)]
        arrays[name] = (data, labels)
    return arrays


def _as_key(text: str, key_type: str):
    if key_type == "bytes":
        return text.encode("ascii")
    if key_type == "str":
        return text
    raise ValueError(f"invalid key_type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def batch_pickle(data, labels, key_type: str = "bytes", batch_label: str = "fixture batch",
                 filenames=None) -> bytes:
    """Pickle one batch as the official files do, with ``bytes`` or ``str`` keys.

    ``data`` and ``labels`` are stored as given, without checks, so tests can write invalid
    batches. ``key_type="bytes"`` also stores ``batch_label`` and the file names as bytes, as
    Python 2 did.
    """
    if filenames is None:
        filenames = [f"fixture_{row:05d}.png" for row in range(len(labels))]
    batch = {
        _as_key("batch_label", key_type): _as_key(batch_label, key_type),
        _as_key("labels", key_type): labels,
        _as_key("data", key_type): data,
        _as_key("filenames", key_type): [_as_key(name, key_type) for name in filenames],
    }
    return pickle.dumps(batch, protocol=2)


def meta_pickle(label_names=LABEL_NAMES, key_type: str = "bytes") -> bytes:
    """Pickle a ``batches.meta`` dict whose ``label_names`` are stored as given."""
    names = [_as_key(name, key_type) if isinstance(name, str) else name for name in label_names]
    meta = {
        _as_key("num_cases_per_batch", key_type): 10000,
        _as_key("label_names", key_type): names,
        _as_key("num_vis", key_type): N_FEATURES,
    }
    return pickle.dumps(meta, protocol=2)


def _fixture_files(n_per_batch: int, key_type: str, seed: int) -> dict:
    """Return the fixture files as a dict of file name to pickled bytes."""
    files = {META_FILE: meta_pickle(key_type=key_type)}
    arrays = make_cifar_arrays(n_per_batch, seed)
    for k, name in enumerate(TRAIN_BATCHES, start=1):
        data, labels = arrays[name]
        files[name] = batch_pickle(data, labels, key_type, f"training batch {k} of 5")
    data, labels = arrays[TEST_BATCH]
    files[TEST_BATCH] = batch_pickle(data, labels, key_type, "testing batch 1 of 1")
    return files


def write_cifar_folder(root, n_per_batch: int = 20, key_type: str = "bytes",
                       seed: int = 0) -> Path:
    """Write a ``cifar-10-batches-py`` folder with tiny batches into ``root``.

    Parameters
    ----------
    root : str or os.PathLike
        Existing or new folder that receives the ``cifar-10-batches-py`` folder.
    n_per_batch : int
        Rows in each of the six batches.
    key_type : {"bytes", "str"}
        Type of the pickled dict keys and strings. The official files have bytes keys.
    seed : int
        Seed passed to ``make_cifar_arrays``, which returns the same arrays.

    Returns
    -------
    pathlib.Path
        The ``cifar-10-batches-py`` folder.
    """
    folder = Path(root) / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in _fixture_files(n_per_batch, key_type, seed).items():
        (folder / name).write_bytes(content)
    return folder


def write_cifar_archive(path, n_per_batch: int = 20, key_type: str = "bytes", seed: int = 0,
                        folder=None) -> Path:
    """Write a ``.tar.gz`` archive with the layout of ``cifar-10-python.tar.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        Archive file to create. Its parent folder must exist.
    n_per_batch, key_type, seed
        As in ``write_cifar_folder``. Ignored when ``folder`` is given.
    folder : str or os.PathLike, optional
        Pack the regular files of this folder, for example one that a test has altered,
        instead of generating new ones. They go under ``cifar-10-batches-py/``.

    Returns
    -------
    pathlib.Path
        The archive path.
    """
    if folder is None:
        files = _fixture_files(n_per_batch, key_type, seed)
    else:
        files = {entry.name: entry.read_bytes()
                 for entry in sorted(Path(folder).iterdir()) if entry.is_file()}

    path = Path(path)
    with tarfile.open(path, "w:gz") as archive:
        directory = tarfile.TarInfo(FOLDER_NAME)
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        archive.addfile(directory)
        for name, content in files.items():
            info = tarfile.TarInfo(f"{FOLDER_NAME}/{name}")
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return path


def expected_standardized(n_per_batch: int = 20, seed: int = 0, n_val: int = 0,
                          dtype=np.float64) -> dict:
    """Compute the arrays that loading a default fixture should return, in float64 NumPy.

    Returns a dict with ``X_train``, ``y_train``, ``X_val``, ``y_val``, ``X_test``, ``y_test``,
    ``mean`` and ``std``. Features with standard deviation 0 are divided by 1.
    """
    arrays = make_cifar_arrays(n_per_batch, seed)
    train = np.concatenate([arrays[name][0] for name in TRAIN_BATCHES]).astype(np.float64)
    labels = np.concatenate([arrays[name][1] for name in TRAIN_BATCHES]).astype(np.int64)
    n_fit = train.shape[0] - n_val
    mean = train[:n_fit].mean(axis=0)
    std = train[:n_fit].std(axis=0)
    std[std == 0] = 1.0
    test = arrays[TEST_BATCH][0].astype(np.float64)
    return {
        "X_train": ((train[:n_fit] - mean) / std).astype(dtype),
        "y_train": labels[:n_fit],
        "X_val": ((train[n_fit:] - mean) / std).astype(dtype),
        "y_val": labels[n_fit:],
        "X_test": ((test - mean) / std).astype(dtype),
        "y_test": np.asarray(arrays[TEST_BATCH][1], dtype=np.int64),
        "mean": mean,
        "std": std,
    }


__all__ = [
    "BATCH_NAMES", "FOLDER_NAME", "LABEL_NAMES", "META_FILE", "TEST_BATCH", "TRAIN_BATCHES",
    "batch_pickle", "expected_standardized", "make_cifar_arrays", "meta_pickle",
    "write_cifar_archive", "write_cifar_folder",
]
