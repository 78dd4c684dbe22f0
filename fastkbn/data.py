"""Load CIFAR-10 from the official python archive as standardized float arrays.

``load_cifar10`` reads ``cifar-10-python.tar.gz`` directly (without extracting it) or an
extracted ``cifar-10-batches-py`` folder, and validates every batch before it builds any
array. The last ``n_val`` training rows become the validation set, and all splits are
standardized with the per-feature mean and standard deviation of the remaining training rows.
Without a path, it uses ``FASTKBN_DATA`` or downloads the archive once into a cache folder.
``describe_source`` reports where the data is and whether it is valid, for ``fastkbn data``.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import io
import logging
import numbers
import os
import pickle
import tarfile
import tempfile
import time
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .validation import check_dtype

logger = logging.getLogger(__name__)

__all__ = [
    "CIFAR10_MD5", "CIFAR10_URL", "DATA_ENV_VAR", "Dataset", "DownloadError",
    "default_cache_dir", "describe_source", "download_file", "load_cifar10",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
"""MD5 of the official ``cifar-10-python.tar.gz``."""
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
DATA_ENV_VAR = "FASTKBN_DATA"

N_FEATURES = 3072
"""Values per image: the red, green and blue planes of 32x32 pixels, each row-major."""
N_CLASSES = 10
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
REQUIRED_FILES = TRAIN_BATCHES + (TEST_BATCH, META_FILE)

_LOCATION_HINT = ("Pass the path of a CIFAR-10 archive or folder (--data on the command line, "
                  "path= in Python), or set FASTKBN_DATA.")
_READ_CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_DOWNLOAD_CHUNK_BYTES = 1 << 16
_STATS_CHUNK_ROWS = 2048


class DownloadError(OSError):
    """Downloading the CIFAR-10 archive failed or produced a file with the wrong MD5."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """CIFAR-10 splits standardized with the statistics of the training rows.

    ``X_train``, ``X_val`` and ``X_test`` are consecutive row slices of one C-contiguous
    array, so keeping any one of them alive keeps the memory of all three.

    Attributes
    ----------
    X_train : numpy.ndarray, shape (n_train, 3072)
        Standardized training images, one row per image.
    y_train : numpy.ndarray of int64, shape (n_train,)
        Training labels in 0..9.
    X_val : numpy.ndarray, shape (n_val, 3072)
        Standardized validation images: the last ``n_val`` rows of ``data_batch_1`` ...
        ``data_batch_5``. The shape is ``(0, 3072)`` when ``n_val`` is 0.
    y_val : numpy.ndarray of int64, shape (n_val,)
        Validation labels.
    X_test : numpy.ndarray, shape (n_test, 3072)
        Standardized images of ``test_batch``.
    y_test : numpy.ndarray of int64, shape (n_test,)
        Test labels.
    label_names : tuple of str, length 10
        Class names from ``batches.meta``, indexed by label.
    mean : numpy.ndarray, shape (3072,)
        Per-feature mean of the raw training pixels (0..255), subtracted from every split.
    std : numpy.ndarray, shape (3072,)
        Per-feature population standard deviation (ddof=0) of the raw training pixels, which
        divides every split. A feature that is constant over the training rows gets 1 here,
        so it becomes 0 instead of NaN.
    source : str
        Absolute path of the archive or folder that was read.
    checksum_ok : bool or None
        Whether the archive's MD5 equals the official one. None when a folder was read.

    All float arrays have the dtype requested from ``load_cifar10``. ``mean`` and ``std`` are
    computed in float64 and then cast to that dtype.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    source: str
    checksum_ok: bool | None

    def __repr__(self) -> str:
        return (f"Dataset(train={self.X_train.shape}, val={self.X_val.shape}, "
                f"test={self.X_test.shape}, dtype={self.X_train.dtype}, "
                f"source={self.source!r}, checksum_ok={self.checksum_ok})")


@dataclass(frozen=True)
class _Location:
    """A resolved data location: an archive file or a folder of batch files."""

    path: Path
    is_archive: bool
    origin: str  # "argument", "FASTKBN_DATA" or "cache"


@dataclass
class _RawData:
    """Validated uint8 batches, before conversion to floats."""

    train: list  # (data, labels) pairs of data_batch_1 ... data_batch_5, in order
    test: tuple  # (data, labels) of test_batch
    label_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Locating and downloading the data


def default_cache_dir() -> Path:
    """Return the folder that contains the downloaded archive.

    This is ``$XDG_CACHE_HOME/fastkbn`` when ``XDG_CACHE_HOME`` is set to an absolute path,
    and ``~/.cache/fastkbn`` otherwise. The folder is not created here.
    """
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "")
    if xdg_cache and os.path.isabs(xdg_cache):
        return Path(xdg_cache) / "fastkbn"
    return Path.home() / ".cache" / "fastkbn"


def download_file(url: str, destination, *, timeout: float = 60.0) -> None:
    """Download ``url`` into the file ``destination``, showing a tqdm progress bar.

    Parameters
    ----------
    url : str
        URL to fetch with ``urllib``.
    destination : str or os.PathLike
        File to create or overwrite.
    timeout : float
        Seconds that a connection attempt or a single read may block.

    Raises
    ------
    OSError
        The connection or a read failed, or the response ended before its Content-Length.
    http.client.HTTPException
        The server sent an invalid or incomplete HTTP response.
    """
    with urllib.request.urlopen(url, timeout=timeout) as response, \
            open(destination, "wb") as output:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        written = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=os.path.basename(url)) as progress:
            while True:
                chunk = response.read(_DOWNLOAD_CHUNK_BYTES)
                if not chunk:
                    break
                output.write(chunk)
                written += len(chunk)
                progress.update(len(chunk))
    if total is not None and written != total:
        raise OSError(f"download of {url} ended after {written} of {total} bytes")


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_READ_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_archive(archive: Path) -> None:
    """Download the official archive to ``archive`` through a temporary file in its folder.

    The temporary file is renamed only after its MD5 matches, so ``archive`` is either absent
    or complete. On any failure, including KeyboardInterrupt, the temporary file is deleted.
    """
    folder = archive.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(prefix=f".{ARCHIVE_NAME}.", suffix=".part",
                                                  dir=folder)
        os.close(handle)
    except OSError as exc:
        raise DownloadError(f"cannot create a download file in the cache folder {folder}: "
                            f"{exc}. {_LOCATION_HINT}") from exc

    temporary = Path(temporary_name)
    try:
        logger.info("Downloading CIFAR-10 from %s to %s", CIFAR10_URL, archive)
        try:
            download_file(CIFAR10_URL, temporary)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"failed to download CIFAR-10 from {CIFAR10_URL}: {exc}. "
                                f"{_LOCATION_HINT}") from exc
        digest = _file_md5(temporary)
        if digest != CIFAR10_MD5:
            raise DownloadError(f"the file downloaded from {CIFAR10_URL} has MD5 {digest}, "
                                f"expected {CIFAR10_MD5}. {_LOCATION_HINT}")
        os.replace(temporary, archive)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    logger.info("Saved the CIFAR-10 archive to %s", archive)


def _cached_archive(download: bool) -> tuple[Path, str | None]:
    """Return the cached archive path and its MD5, downloading the archive if needed.

    The MD5 is None when the archive is missing and ``download`` is False. A cached archive
    with another MD5 is downloaded again when ``download`` is True, else returned as is.
    """
    archive = default_cache_dir() / ARCHIVE_NAME
    if archive.is_file():
        digest = _file_md5(archive)
        if digest == CIFAR10_MD5 or not download:
            return archive, digest
        logger.warning("Cached archive %s has MD5 %s, expected %s, so it is downloaded again",
                       archive, digest, CIFAR10_MD5)
    elif not download:
        return archive, None
    _download_archive(archive)
    return archive, CIFAR10_MD5


def _resolve_path(path: Path, origin: str) -> _Location:
    """Find the archive or batch folder at ``path``, which may also be their parent folder."""
    if not path.exists():
        raise FileNotFoundError(f"CIFAR-10 data not found: {path} does not exist "
                                f"(given by {origin}). {_LOCATION_HINT}")
    if not path.is_dir():
        return _Location(path, is_archive=True, origin=origin)
    if any((path / name).exists() for name in REQUIRED_FILES):
        return _Location(path, is_archive=False, origin=origin)
    # A parent folder: the extracted folder is preferred because it needs no decompression.
    if (path / FOLDER_NAME).is_dir():
        return _Location(path / FOLDER_NAME, is_archive=False, origin=origin)
    if (path / ARCHIVE_NAME).is_file():
        return _Location(path / ARCHIVE_NAME, is_archive=True, origin=origin)
    raise FileNotFoundError(f"no CIFAR-10 data in folder {path} (given by {origin}): expected "
                            f"{ARCHIVE_NAME}, a {FOLDER_NAME} folder or the files "
                            f"{', '.join(REQUIRED_FILES)}")


def _explicit_path(path) -> tuple[Path, str] | None:
    """Return the path from the argument or from FASTKBN_DATA, or None if neither is set."""
    if path is not None:
        return Path(path).expanduser().absolute(), "argument"
    from_env = os.environ.get(DATA_ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser().absolute(), DATA_ENV_VAR
    return None


# ---------------------------------------------------------------------------------------------
# Reading and validating the pickled batches


def _allowed_pickle_globals() -> dict:
    """Map each ``(module, name)`` global that pickled NumPy arrays use to its object.

    NumPy 1.x writes ``numpy.core.*`` and NumPy 2.x ``numpy._core.*``. Protocol 2 pickles
    written by Python 3 store bytes through ``_codecs.encode``, and empty bytes (the buffer
    of an empty array) as a call to ``bytes`` under its Python 2 module name ``__builtin__``.
    """
    reconstruct = np.zeros(1, np.uint8).__reduce__()[0]
    from_buffer = np.zeros(1, np.uint8).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = from_buffer
    return allowed


_ALLOWED_PICKLE_GLOBALS = _allowed_pickle_globals()


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild NumPy arrays.

    Unpickling may call any global that the pickle names, so a file from an unknown source
    could run code. This unpickler rejects every global outside a fixed NumPy list.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"the pickle refers to {module}.{name}, which a "
                                         "CIFAR-10 batch does not use") from None


def _unpickle(content: bytes, where: str):
    """Unpickle a Python 2 batch file. Keys come back as bytes or str, as they were written."""
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(content), encoding="bytes").load()
    # A corrupt pickle can fail with any of these, depending on where the damage is.
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError) as exc:
        raise ValueError(f"{where} is not a valid CIFAR-10 pickle: {exc}") from exc


def _get_field(batch, key: str, where: str):
    """Return ``batch[key]`` whether the pickle stored the key as str or as bytes."""
    if not isinstance(batch, dict):
        raise ValueError(f"{where} is not a CIFAR-10 batch: it contains an object of type "
                         f"{type(batch).__name__}, expected a dict")
    for candidate in (key, key.encode("ascii")):
        if candidate in batch:
            return batch[candidate]
    found = ", ".join(repr(existing) for existing in batch)
    raise ValueError(f"{where} has no {key!r} field (found: {found})")


def _parse_batch(content: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, labels)`` of one batch file after checking both.

    ``data`` is uint8 of shape (n, 3072) with n >= 1, and ``labels`` is int64 of shape (n,).
    """
    batch = _unpickle(content, where)
    data = _get_field(batch, "data", where)
    labels = _get_field(batch, "labels", where)

    if not isinstance(data, np.ndarray):
        raise ValueError(f"{where}: 'data' has type {type(data).__name__}, expected a uint8 "
                         "NumPy array")
    if data.dtype != np.uint8:
        raise ValueError(f"{where}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != N_FEATURES:
        raise ValueError(f"{where}: 'data' has shape {data.shape}, expected (n, {N_FEATURES})")
    if data.shape[0] == 0:
        raise ValueError(f"{where}: 'data' has no rows")

    label_array = np.asarray(labels)
    if label_array.ndim != 1 or label_array.dtype.kind not in "iu":
        raise ValueError(f"{where}: 'labels' must be a flat list of integers, got an array of "
                         f"dtype {label_array.dtype} and shape {label_array.shape}")
    if label_array.shape[0] != data.shape[0]:
        raise ValueError(f"{where}: 'data' has {data.shape[0]} rows but 'labels' has "
                         f"{label_array.shape[0]} entries")
    invalid = (label_array < 0) | (label_array >= N_CLASSES)
    if invalid.any():
        row = int(np.argmax(invalid))
        raise ValueError(f"{where}: label {label_array[row]} at row {row} is outside "
                         f"0..{N_CLASSES - 1} ({int(invalid.sum())} invalid labels in total)")
    return data, label_array.astype(np.int64)


def _parse_meta(content: bytes, where: str) -> tuple:
    """Return the 10 class names of ``batches.meta`` as str."""
    names = _get_field(_unpickle(content, where), "label_names", where)
    if not isinstance(names, (list, tuple)) or len(names) != N_CLASSES:
        count = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise ValueError(f"{where}: 'label_names' must list {N_CLASSES} names, got {count}")
    decoded = []
    for name in names:
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: label name {name!r} is not UTF-8") from exc
        if not isinstance(name, str):
            raise ValueError(f"{where}: label name {name!r} has type {type(name).__name__}, "
                             "expected str or bytes")
        decoded.append(name)
    return tuple(decoded)


def _parse_file(name: str, content: bytes, where: str):
    if name == META_FILE:
        return _parse_meta(content, where)
    return _parse_batch(content, where)


def _read_folder(folder: Path) -> dict:
    """Read and parse the required files of a ``cifar-10-batches-py`` folder."""
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 folder {folder} is missing {', '.join(missing)}")
    parsed = {}
    for name in REQUIRED_FILES:
        file_path = folder / name
        try:
            with open(file_path, "rb") as file:
                content = file.read()
        except OSError as exc:
            raise ValueError(f"cannot read CIFAR-10 file {file_path}: {exc.strerror}") from exc
        parsed[name] = _parse_file(name, content, str(file_path))
    return parsed


def _parse_members(tar: tarfile.TarFile, archive: Path) -> dict:
    """Parse the required members of an archive opened in stream mode, in archive order."""
    parsed = {}
    for member in tar:
        name = os.path.basename(member.name)
        if name not in REQUIRED_FILES or not member.isfile():
            continue
        if name in parsed:
            raise ValueError(f"{archive} contains {name} more than once")
        content = tar.extractfile(member).read()
        parsed[name] = _parse_file(name, content, f"{member.name} in {archive}")
    return parsed


def _read_archive(archive: Path) -> dict:
    """Read and parse the required members of a tar archive in one sequential pass.

    Members are matched by file name in any folder and in any order. The archive is read as
    a stream because seeking backwards in a gzip stream decompresses it again from the
    start. ``gzip.GzipFile`` decompresses a gzip archive, rather than tarfile, because it
    checks the CRC in the gzip trailer, which catches damage that leaves the tar headers
    intact. Other archives go through tarfile's detection of uncompressed, bz2 and xz tars.
    """
    try:
        file = open(archive, "rb")
    except OSError as exc:
        raise ValueError(f"cannot read CIFAR-10 archive {archive}: {exc.strerror}") from exc

    with file:
        is_gzip = file.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if is_gzip else file
        with stream:
            try:
                tar = tarfile.open(fileobj=stream, mode="r|" if is_gzip else "r|*",
                                   bufsize=_READ_CHUNK_BYTES)
            except tarfile.TarError as exc:
                raise ValueError(f"{archive} is not a tar archive, expected {ARCHIVE_NAME}: "
                                 f"{exc}") from exc
            except (EOFError, zlib.error, OSError) as exc:
                raise ValueError(f"{archive} is truncated or corrupt: {exc}") from exc
            with tar:
                try:
                    parsed = _parse_members(tar, archive)
                    # Reading to the end makes GzipFile check the CRC of the whole stream.
                    while stream.read(_READ_CHUNK_BYTES):
                        pass
                except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                    raise ValueError(f"{archive} is truncated or corrupt: {exc}") from exc

    missing = [name for name in REQUIRED_FILES if name not in parsed]
    if missing:
        raise ValueError(f"{archive} is not a CIFAR-10 archive: it has no "
                         f"{', '.join(missing)} (expected in {FOLDER_NAME}/)")
    return parsed


def _read_location(location: _Location) -> _RawData:
    started = time.perf_counter()
    if location.is_archive:
        parsed = _read_archive(location.path)
    else:
        parsed = _read_folder(location.path)
    logger.debug("Read and checked %s in %.2f s", location.path,
                 time.perf_counter() - started)
    return _RawData(train=[parsed[name] for name in TRAIN_BATCHES], test=parsed[TEST_BATCH],
                    label_names=parsed[META_FILE])


# ---------------------------------------------------------------------------------------------
# Building the standardized arrays


def _check_n_val_type(n_val) -> int:
    if isinstance(n_val, bool) or not isinstance(n_val, numbers.Integral) or n_val < 0:
        raise ValueError(f"n_val must be an integer with 0 <= n_val < the number of training "
                         f"rows (50000 in the official data), got {n_val!r}")
    return int(n_val)


def _feature_stats(blocks: list) -> tuple[np.ndarray, np.ndarray]:
    """Return the float64 mean and population std of each column over uint8 row blocks.

    The sums are accumulated in int64, which is exact for pixel values, so a constant column
    gets a variance of exactly 0.
    """
    n_rows = sum(block.shape[0] for block in blocks)
    total = np.zeros(N_FEATURES, dtype=np.int64)
    total_sq = np.zeros(N_FEATURES, dtype=np.int64)
    for block in blocks:
        for start in range(0, block.shape[0], _STATS_CHUNK_ROWS):
            chunk = block[start:start + _STATS_CHUNK_ROWS].astype(np.int64)
            total += chunk.sum(axis=0)
            total_sq += np.einsum("ij,ij->j", chunk, chunk)
    mean = total / n_rows
    # n^2 * variance = n * sum(x^2) - sum(x)^2, exact in int64 below about 10^7 rows.
    variance = (n_rows * total_sq - total * total) / float(n_rows) ** 2
    return mean, np.sqrt(variance)


def _build_dataset(raw: _RawData, n_val: int, dtype: np.dtype, location: _Location,
                   checksum_ok: bool | None) -> Dataset:
    n_train_total = sum(data.shape[0] for data, _ in raw.train)
    if n_val >= n_train_total:
        raise ValueError(f"n_val must satisfy 0 <= n_val < {n_train_total} (the number of "
                         f"training rows in {location.path}), got {n_val}")
    n_fit = n_train_total - n_val
    n_test = raw.test[0].shape[0]

    # Statistics of the rows that stay in the training split, taken from the uint8 batches.
    fit_blocks = []
    offset = 0
    for data, _ in raw.train:
        fit_blocks.append(data[:max(0, n_fit - offset)])
        offset += data.shape[0]
    mean, std = _feature_stats(fit_blocks)
    std[std == 0] = 1.0

    # One float array for all splits, standardized in place to avoid temporary copies.
    X = np.empty((n_train_total + n_test, N_FEATURES), dtype=dtype)
    offset = 0
    for data, _ in raw.train + [raw.test]:
        X[offset:offset + data.shape[0]] = data
        offset += data.shape[0]
    mean_cast = mean.astype(dtype)
    std_cast = std.astype(dtype)
    X -= mean_cast
    X /= std_cast

    y_train_total = np.concatenate([labels for _, labels in raw.train])
    return Dataset(
        X_train=X[:n_fit],
        y_train=y_train_total[:n_fit].copy(),
        X_val=X[n_fit:n_train_total],
        y_val=y_train_total[n_fit:].copy(),
        X_test=X[n_train_total:],
        y_test=raw.test[1],
        label_names=raw.label_names,
        mean=mean_cast,
        std=std_cast,
        source=str(location.path),
        checksum_ok=checksum_ok,
    )


# ---------------------------------------------------------------------------------------------
# Public entry points


def _locate(path, download: bool) -> tuple[_Location, str | None]:
    """Resolve ``path`` as ``load_cifar10`` documents it. Also return the archive's MD5.

    The MD5 is None for a folder, and for a missing cached archive when ``download`` is False.
    """
    explicit = _explicit_path(path)
    if explicit is None:
        archive, digest = _cached_archive(download)
        return _Location(archive, is_archive=True, origin="cache"), digest

    location = _resolve_path(*explicit)
    digest = None
    if location.is_archive:
        try:
            digest = _file_md5(location.path)
        except OSError as exc:
            raise ValueError(f"cannot read CIFAR-10 archive {location.path}: "
                             f"{exc.strerror}") from exc
    return location, digest


def load_cifar10(path=None, n_val: int = 5000, dtype="float32") -> Dataset:
    """Load CIFAR-10, split off a validation set and standardize every split.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The ``cifar-10-python.tar.gz`` archive, an extracted ``cifar-10-batches-py`` folder,
        or a folder that contains either (the extracted folder is used if both are there).
        When None, the environment variable ``FASTKBN_DATA`` gives the path, and if it is
        unset or empty the archive is downloaded once from ``CIFAR10_URL`` into
        ``default_cache_dir()``. A cached archive is reused when its MD5 matches.
    n_val : int
        Number of validation rows, taken from the end of ``data_batch_1`` ... ``data_batch_5``
        concatenated in order. Must satisfy 0 <= n_val < number of training rows (50000 in
        the official data).
    dtype : {"float32", "float64"} or numpy.float32 or numpy.float64
        Dtype of the returned images, ``mean`` and ``std``.

    Returns
    -------
    Dataset
        With the official data: ``X_train`` (45000, 3072), ``X_val`` (5000, 3072) and
        ``X_test`` (10000, 3072) for the default ``n_val``, C-contiguous of ``dtype``, and
        int64 labels of shapes (45000,), (5000,) and (10000,). Each image row contains the red,
        green and blue 32x32 planes, row-major. The mean and std of the training rows
        (after the validation rows are removed) standardize all three splits.

    Raises
    ------
    FileNotFoundError
        ``path`` or ``FASTKBN_DATA`` names a missing file or a folder without CIFAR-10 data,
        or a ``cifar-10-batches-py`` folder lacks a batch file.
    ValueError
        ``n_val`` or ``dtype`` is invalid, or a file cannot be read, is truncated or is not
        in the CIFAR-10 format. The message names the file and the problem.
    DownloadError
        The download failed or the downloaded file has the wrong MD5. Its temporary file is
        deleted and no archive is cached.

    Warns
    -----
    UserWarning
        An archive from ``path`` or ``FASTKBN_DATA`` has another MD5 than the official one.
        It is still used, because its layout and contents passed all checks.
    """
    n_val = _check_n_val_type(n_val)
    dtype = check_dtype(dtype)

    started = time.perf_counter()
    location, digest = _locate(path, download=True)
    logger.info("Reading CIFAR-10 from %s", location.path)
    raw = _read_location(location)

    checksum_ok = None if digest is None else digest == CIFAR10_MD5
    if checksum_ok is False:
        warnings.warn(f"{location.path} is not the official CIFAR-10 archive: its MD5 is "
                      f"{digest}, expected {CIFAR10_MD5}. It passed the layout checks and is "
                      "used as is.", UserWarning, stacklevel=2)

    dataset = _build_dataset(raw, n_val, dtype, location, checksum_ok)
    logger.info("Loaded CIFAR-10 in %.2f s: %d training, %d validation and %d test rows",
                time.perf_counter() - started, dataset.X_train.shape[0],
                dataset.X_val.shape[0], dataset.X_test.shape[0])
    return dataset


def describe_source(path=None, *, download: bool = False) -> dict:
    """Locate and validate the CIFAR-10 data without building float arrays.

    The path is resolved as in ``load_cifar10`` and every batch is read and checked, which
    takes a few seconds for the real archive. No MD5 warning is issued, because the result
    reports the checksum.

    Parameters
    ----------
    path : str or os.PathLike, optional
        As in ``load_cifar10``.
    download : bool
        When ``path`` and ``FASTKBN_DATA`` are unset and no valid archive is cached, download
        it if True. If False, a missing cached archive is reported with ``exists`` False, and
        a cached archive with another MD5 is checked and reported as it is.

    Returns
    -------
    dict
        ``path`` (str): absolute path of the archive or folder, or of the expected cached
        archive. ``origin`` (str): ``"argument"``, ``"FASTKBN_DATA"`` or ``"cache"``.
        ``exists`` (bool). ``format`` (str or None): ``"archive"`` or ``"folder"``.
        ``md5`` (str or None): MD5 of the archive. ``checksum_ok`` (bool or None): whether
        it equals the official MD5, None for a folder or a missing file.
        ``batches`` (dict or None): batch name to ``(rows, 3072)`` for ``data_batch_1`` ...
        ``test_batch``. ``n_train_rows`` and ``n_test_rows`` (int or None).
        ``label_names`` (list of str or None). Fields after ``exists`` are None when the
        file does not exist.

    Raises
    ------
    FileNotFoundError, ValueError, DownloadError
        As in ``load_cifar10``, when the data is missing, invalid or cannot be downloaded.
    """
    location, digest = _locate(path, download=download)
    report = {
        "path": str(location.path),
        "origin": location.origin,
        "exists": location.path.exists(),
        "format": None,
        "md5": None,
        "checksum_ok": None,
        "batches": None,
        "n_train_rows": None,
        "n_test_rows": None,
        "label_names": None,
    }
    if not report["exists"]:
        return report

    raw = _read_location(location)
    batch_data = [data for data, _ in raw.train] + [raw.test[0]]
    report.update(
        format="archive" if location.is_archive else "folder",
        md5=digest,
        checksum_ok=None if digest is None else digest == CIFAR10_MD5,
        batches={name: tuple(data.shape)
                 for name, data in zip(TRAIN_BATCHES + (TEST_BATCH,), batch_data)},
        n_train_rows=sum(data.shape[0] for data, _ in raw.train),
        n_test_rows=raw.test[0].shape[0],
        label_names=list(raw.label_names),
    )
    return report
