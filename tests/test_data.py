"""Tests for fastkbn.data on tiny CIFAR-10 fixtures written into tmp_path.

No test reaches the network: downloads go through a monkeypatched ``download_file``.
"""
from __future__ import annotations

import builtins
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import warnings

import numpy as np
import pytest

from fastkbn import data
try:  # pytest puts tests/ on sys.path unless tests/ is a package
    from cifar_fixtures import (
        FOLDER_NAME, LABEL_NAMES, TRAIN_BATCHES, batch_pickle, expected_standardized,
        make_cifar_arrays, meta_pickle, write_cifar_archive, write_cifar_folder,
    )
except ImportError:
    from tests.cifar_fixtures import (
        FOLDER_NAME, LABEL_NAMES, TRAIN_BATCHES, batch_pickle, expected_standardized,
        make_cifar_arrays, meta_pickle, write_cifar_archive, write_cifar_folder,
    )

N_PER_BATCH = 20
N_TRAIN_TOTAL = 5 * N_PER_BATCH

# Saved before the autouse fixture replaces them for every test.
REAL_DOWNLOAD_FILE = data.download_file
REAL_DATA_PATH = os.environ.get(data.DATA_ENV_VAR, "")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Point the cache at tmp_path, unset FASTKBN_DATA and fail any download attempt."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)

    def reject_download(url, destination, **kwargs):
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(data, "download_file", reject_download)


@pytest.fixture
def folder(tmp_path):
    return write_cifar_folder(tmp_path / "extracted", n_per_batch=N_PER_BATCH)


@pytest.fixture
def archive(tmp_path):
    return write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", n_per_batch=N_PER_BATCH)


def load_quietly(path, **kwargs):
    """Load while ignoring the warning that every fixture archive triggers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the official CIFAR-10 archive")
        return data.load_cifar10(path, **kwargs)


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cached_archive_path(tmp_path):
    return tmp_path / "xdg-cache" / "fastkbn" / data.ARCHIVE_NAME


# ---------------------------------------------------------------------------------------------
# Loading valid data


@pytest.mark.parametrize("key_type", ["bytes", "str"])
def test_load_folder_matches_expected(tmp_path, key_type):
    folder = write_cifar_folder(tmp_path, n_per_batch=N_PER_BATCH, key_type=key_type)
    dataset = data.load_cifar10(folder, n_val=10, dtype="float64")
    expected = expected_standardized(N_PER_BATCH, n_val=10)

    for name in ("X_train", "X_val", "X_test"):
        np.testing.assert_allclose(getattr(dataset, name), expected[name], rtol=0, atol=1e-12)
    for name in ("y_train", "y_val", "y_test"):
        np.testing.assert_array_equal(getattr(dataset, name), expected[name])
    np.testing.assert_allclose(dataset.mean, expected["mean"], rtol=1e-15)
    np.testing.assert_allclose(dataset.std, expected["std"], rtol=1e-12)
    assert dataset.label_names == LABEL_NAMES
    assert dataset.checksum_ok is None
    assert dataset.source == str(folder)


@pytest.mark.parametrize("key_type", ["bytes", "str"])
def test_load_archive_with_key_type(tmp_path, key_type):
    archive = write_cifar_archive(tmp_path / "c.tar.gz", n_per_batch=N_PER_BATCH,
                                  key_type=key_type)
    dataset = load_quietly(archive, n_val=10, dtype="float64")
    expected = expected_standardized(N_PER_BATCH, n_val=10)

    np.testing.assert_allclose(dataset.X_train, expected["X_train"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dataset.y_test, expected["y_test"])
    assert dataset.label_names == LABEL_NAMES


def test_path_forms_give_same_arrays(tmp_path):
    extracted_parent = tmp_path / "extracted_parent"
    folder = write_cifar_folder(extracted_parent, n_per_batch=N_PER_BATCH)
    archive_parent = tmp_path / "archive_parent"
    archive_parent.mkdir()
    archive = write_cifar_archive(archive_parent / data.ARCHIVE_NAME, n_per_batch=N_PER_BATCH)

    reference = data.load_cifar10(folder, n_val=10)
    others = {
        "parent of folder": data.load_cifar10(extracted_parent, n_val=10),
        "archive": load_quietly(archive, n_val=10),
        "parent of archive": load_quietly(archive_parent, n_val=10),
        "str path": data.load_cifar10(str(folder), n_val=10),
    }
    for form, dataset in others.items():
        for field in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean",
                      "std"):
            np.testing.assert_array_equal(getattr(dataset, field), getattr(reference, field),
                                          err_msg=f"{field} differs for the {form}")
    assert others["parent of folder"].source == str(folder)
    assert others["parent of archive"].source == str(archive)


def test_parent_with_both_prefers_folder(tmp_path):
    folder = write_cifar_folder(tmp_path, n_per_batch=N_PER_BATCH)
    write_cifar_archive(tmp_path / data.ARCHIVE_NAME, n_per_batch=N_PER_BATCH)

    dataset = data.load_cifar10(tmp_path, n_val=10)

    assert dataset.source == str(folder)
    assert dataset.checksum_ok is None


@pytest.mark.parametrize("dtype, expected", [
    ("float32", np.float32),
    ("float64", np.float64),
    (np.float32, np.float32),
    (np.dtype("float64"), np.float64),
])
def test_shapes_and_dtypes(folder, dtype, expected):
    dataset = data.load_cifar10(folder, n_val=15, dtype=dtype)

    assert dataset.X_train.shape == (N_TRAIN_TOTAL - 15, 3072)
    assert dataset.X_val.shape == (15, 3072)
    assert dataset.X_test.shape == (N_PER_BATCH, 3072)
    assert dataset.y_train.shape == (N_TRAIN_TOTAL - 15,)
    assert dataset.y_val.shape == (15,)
    assert dataset.y_test.shape == (N_PER_BATCH,)
    for name in ("X_train", "X_val", "X_test", "mean", "std"):
        array = getattr(dataset, name)
        assert array.dtype == expected, name
        assert array.flags.c_contiguous, name
    assert dataset.mean.shape == (3072,)
    assert dataset.std.shape == (3072,)
    for name in ("y_train", "y_val", "y_test"):
        labels = getattr(dataset, name)
        assert labels.dtype == np.int64, name
        assert labels.min() >= 0, name
        assert labels.max() <= 9, name


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("float64", 1e-12)])
def test_training_rows_are_standardized(folder, dtype, atol):
    dataset = data.load_cifar10(folder, n_val=25, dtype=dtype)
    X_train = dataset.X_train.astype(np.float64)

    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=atol)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=atol * 10)


def test_validation_is_last_training_rows(folder):
    n_val = 30  # the last 10 rows of data_batch_4 and all of data_batch_5
    dataset = data.load_cifar10(folder, n_val=n_val, dtype="float64")
    arrays = make_cifar_arrays(N_PER_BATCH)
    raw_train = np.concatenate([arrays[name][0] for name in TRAIN_BATCHES])
    raw_labels = np.concatenate([arrays[name][1] for name in TRAIN_BATCHES])

    restored_val = dataset.X_val * dataset.std + dataset.mean
    restored_train = dataset.X_train * dataset.std + dataset.mean

    np.testing.assert_allclose(restored_val, raw_train[-n_val:], atol=1e-9)
    np.testing.assert_array_equal(dataset.y_val, raw_labels[-n_val:])
    np.testing.assert_allclose(restored_train, raw_train[:-n_val], atol=1e-9)
    np.testing.assert_array_equal(dataset.y_train, raw_labels[:-n_val])


def test_n_val_zero_gives_empty_validation(folder):
    dataset = data.load_cifar10(folder, n_val=0)

    assert dataset.X_val.shape == (0, 3072)
    assert dataset.y_val.shape == (0,)
    assert dataset.X_train.shape == (N_TRAIN_TOTAL, 3072)


def test_constant_feature_gets_unit_std(tmp_path):
    folder = write_cifar_folder(tmp_path, n_per_batch=N_PER_BATCH)
    arrays = make_cifar_arrays(N_PER_BATCH)
    for name in TRAIN_BATCHES:
        pixels, labels = arrays[name]
        pixels = pixels.copy()
        pixels[:, 5] = 200
        (folder / name).write_bytes(batch_pickle(pixels, labels))

    dataset = data.load_cifar10(folder, n_val=10)

    assert dataset.std[5] == 1.0
    assert dataset.mean[5] == 200.0
    assert np.all(dataset.X_train[:, 5] == 0.0)
    assert np.isfinite(dataset.X_test).all()


def test_dataset_is_frozen_with_short_repr(folder):
    dataset = data.load_cifar10(folder, n_val=10)

    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.X_train = None
    assert "train=(90, 3072)" in repr(dataset)
    assert len(repr(dataset)) < 300


# ---------------------------------------------------------------------------------------------
# Argument checks


@pytest.mark.parametrize("n_val", [N_TRAIN_TOTAL, N_TRAIN_TOTAL + 1])
def test_n_val_too_large_rejected(folder, n_val):
    with pytest.raises(ValueError, match=r"n_val must satisfy 0 <= n_val < 100"):
        data.load_cifar10(folder, n_val=n_val)


@pytest.mark.parametrize("n_val", [-1, 5.0, "10", True, None])
def test_n_val_negative_or_non_integer_rejected(folder, n_val):
    with pytest.raises(ValueError, match="n_val must be an integer with 0 <= n_val <"):
        data.load_cifar10(folder, n_val=n_val)


@pytest.mark.parametrize("dtype", ["int32", "float16", "bogus", np.uint8])
def test_invalid_dtype_rejected(folder, dtype):
    with pytest.raises(ValueError, match="float32, float64"):
        data.load_cifar10(folder, dtype=dtype)


def test_missing_path_rejected(tmp_path):
    missing = tmp_path / "nowhere.tar.gz"

    with pytest.raises(FileNotFoundError, match="nowhere.tar.gz does not exist"):
        data.load_cifar10(missing)


def test_folder_without_data_rejected(tmp_path):
    (tmp_path / "unrelated.txt").write_text("not CIFAR-10")

    with pytest.raises(FileNotFoundError, match="no CIFAR-10 data in folder"):
        data.load_cifar10(tmp_path)


# ---------------------------------------------------------------------------------------------
# Checksums and FASTKBN_DATA


def test_unofficial_archive_warns_and_loads(archive):
    with pytest.warns(UserWarning, match="not the official CIFAR-10 archive"):
        dataset = data.load_cifar10(archive, n_val=10)

    assert dataset.checksum_ok is False
    assert dataset.X_train.shape == (90, 3072)


def test_official_md5_loads_without_warning(archive, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_MD5", md5_of(archive))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = data.load_cifar10(archive, n_val=10)

    assert dataset.checksum_ok is True


def test_folder_loads_without_warning(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = data.load_cifar10(folder, n_val=10)

    assert dataset.checksum_ok is None


def test_env_var_used_when_path_none(archive, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(archive))

    dataset = load_quietly(None, n_val=10)

    assert dataset.source == str(archive)
    assert dataset.X_test.shape == (N_PER_BATCH, 3072)


def test_env_var_missing_path_names_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "gone"))

    with pytest.raises(FileNotFoundError, match="gone does not exist.*FASTKBN_DATA"):
        data.load_cifar10()


def test_argument_overrides_env_var(folder, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "gone"))

    dataset = data.load_cifar10(folder, n_val=10)

    assert dataset.source == str(folder)


# ---------------------------------------------------------------------------------------------
# Invalid data: every case raises and names the file


def replace_file(folder, name, content: bytes):
    (folder / name).write_bytes(content)


def batch_with(pixels=None, labels=None, key_type="bytes"):
    """Return a pickled data_batch with the fixture's rows, overriding pixels or labels."""
    default_pixels, default_labels = make_cifar_arrays(N_PER_BATCH)["data_batch_2"]
    return batch_pickle(default_pixels if pixels is None else pixels,
                        default_labels if labels is None else labels, key_type)


class PickledFunctionCall:
    """Object whose pickle calls os.getcwd, a harmless stand-in for arbitrary code."""

    def __reduce__(self):
        return (os.getcwd, ())


INVALID_FILES = {
    "wrong column count": (
        "data_batch_2",
        batch_with(pixels=np.zeros((N_PER_BATCH, 3071), np.uint8)),
        r"data_batch_2.*shape \(20, 3071\), expected \(n, 3072\)"),
    "one-dimensional data": (
        "data_batch_2",
        batch_with(pixels=np.zeros(3072, np.uint8), labels=[0]),
        r"data_batch_2.*shape \(3072,\)"),
    "no rows": (
        "data_batch_2",
        batch_with(pixels=np.zeros((0, 3072), np.uint8), labels=[]),
        r"data_batch_2.*no rows"),
    "rows differ from labels": (
        "data_batch_2",
        batch_with(labels=[1] * (N_PER_BATCH - 1)),
        r"data_batch_2.*20 rows but 'labels' has 19 entries"),
    "float data": (
        "data_batch_2",
        batch_with(pixels=np.zeros((N_PER_BATCH, 3072), np.float64)),
        r"data_batch_2.*dtype float64, expected uint8"),
    "data not an array": (
        "data_batch_2",
        batch_with(pixels=[[0] * 3072] * N_PER_BATCH),
        r"data_batch_2.*'data' has type list"),
    "label above 9": (
        "test_batch",
        batch_with(labels=[0] * 7 + [10] + [0] * (N_PER_BATCH - 8)),
        r"test_batch.*label 10 at row 7 is outside 0..9"),
    "negative label": (
        "data_batch_5",
        batch_with(labels=[-1] + [0] * (N_PER_BATCH - 1)),
        r"data_batch_5.*label -1 at row 0"),
    "float labels": (
        "data_batch_1",
        batch_with(labels=[0.5] * N_PER_BATCH),
        r"data_batch_1.*'labels' must be a flat list of integers"),
    "missing labels field": (
        "data_batch_3",
        pickle.dumps({b"data": np.zeros((N_PER_BATCH, 3072), np.uint8)}, protocol=2),
        r"data_batch_3.*no 'labels' field"),
    "not a dict": (
        "data_batch_3",
        pickle.dumps([1, 2, 3], protocol=2),
        r"data_batch_3.* is not a CIFAR-10 batch: .* type list"),
    "not a pickle": (
        "data_batch_4",
        b"this is plain text, not a pickle",
        r"data_batch_4.* is not a valid CIFAR-10 pickle"),
    "truncated pickle": (
        "data_batch_4",
        batch_with()[:5000],
        r"data_batch_4.* is not a valid CIFAR-10 pickle"),
    "pickle calling a function": (
        "data_batch_4",
        pickle.dumps({b"data": PickledFunctionCall()}, protocol=2),
        r"data_batch_4.* is not a valid CIFAR-10 pickle.*" + os.getcwd.__module__ + r"\.getcwd"),
    "nine label names": (
        "batches.meta",
        meta_pickle(LABEL_NAMES[:9]),
        r"batches.meta.*must list 10 names, got 9"),
    "label names not strings": (
        "batches.meta",
        meta_pickle(list(range(10))),
        r"batches.meta.*label name 0 has type int"),
    "label names missing": (
        "batches.meta",
        pickle.dumps({b"num_vis": 3072}, protocol=2),
        r"batches.meta.*no 'label_names' field"),
}


@pytest.mark.parametrize("container", ["folder", "archive"])
@pytest.mark.parametrize("case", list(INVALID_FILES))
def test_invalid_file_rejected(tmp_path, container, case):
    name, content, pattern = INVALID_FILES[case]
    folder = write_cifar_folder(tmp_path / "source", n_per_batch=N_PER_BATCH)
    replace_file(folder, name, content)
    path = folder
    if container == "archive":
        path = write_cifar_archive(tmp_path / "bad.tar.gz", folder=folder)

    with pytest.raises(ValueError, match=pattern) as raised:
        load_quietly(path, n_val=10)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch", "batches.meta"])
def test_folder_missing_file_rejected(folder, name):
    (folder / name).unlink()

    with pytest.raises(FileNotFoundError, match=f"{FOLDER_NAME} is missing {name}"):
        data.load_cifar10(folder)


@pytest.mark.parametrize("name", ["data_batch_1", "test_batch", "batches.meta"])
def test_archive_missing_member_rejected(folder, tmp_path, name):
    (folder / name).unlink()
    archive = write_cifar_archive(tmp_path / "partial.tar.gz", folder=folder)

    with pytest.raises(ValueError, match=f"partial.tar.gz is not a CIFAR-10 archive.*{name}"):
        load_quietly(archive)


@pytest.mark.parametrize("keep_bytes", [0.5, 1000, -4])
def test_truncated_archive_rejected(archive, keep_bytes):
    content = archive.read_bytes()
    if isinstance(keep_bytes, float):
        keep_bytes = int(len(content) * keep_bytes)
    archive.write_bytes(content[:keep_bytes])

    with pytest.raises(ValueError, match="cifar-10-python.tar.gz is truncated or corrupt"):
        load_quietly(archive)


def test_corrupt_byte_in_archive_rejected(archive):
    content = bytearray(archive.read_bytes())
    content[len(content) // 2] ^= 0xFF
    archive.write_bytes(bytes(content))

    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_quietly(archive)


@pytest.mark.parametrize("content", [
    b"",
    b"plain text, not an archive" * 40,
    gzip.compress(b"gzip-compressed text, not a tar archive" * 40),
], ids=["empty", "text", "gzip text"])
def test_non_archive_file_rejected(tmp_path, content):
    path = tmp_path / "fake.tar.gz"
    path.write_bytes(content)

    with pytest.raises(ValueError, match="fake.tar.gz is not a tar archive"):
        load_quietly(path)


def test_unrelated_tar_rejected(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("photos/readme.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))

    with pytest.raises(ValueError, match="other.tar.gz is not a CIFAR-10 archive.*data_batch_1"):
        load_quietly(path)


def test_duplicate_member_rejected(folder, tmp_path):
    path = write_cifar_archive(tmp_path / "twice.tar.gz", folder=folder)
    content = gzip.decompress(path.read_bytes())
    extra = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(content)) as source, \
            tarfile.open(fileobj=extra, mode="w") as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        member = source.getmember(f"{FOLDER_NAME}/data_batch_2")
        target.addfile(member, source.extractfile(member))
    path.write_bytes(gzip.compress(extra.getvalue()))

    with pytest.raises(ValueError, match="twice.tar.gz contains data_batch_2 more than once"):
        load_quietly(path)


def test_uncompressed_tar_accepted(archive, tmp_path):
    plain = tmp_path / "cifar.tar"
    plain.write_bytes(gzip.decompress(archive.read_bytes()))

    dataset = load_quietly(plain, n_val=10)

    np.testing.assert_array_equal(dataset.X_train, load_quietly(archive, n_val=10).X_train)


def deny_reading(monkeypatch, denied_name):
    """Make fastkbn.data's open() fail with EACCES for files named ``denied_name``."""
    real_open = builtins.open

    def open_or_deny(file, *args, **kwargs):
        if os.path.basename(os.fspath(file)) == denied_name:
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(data, "open", open_or_deny, raising=False)


def test_unreadable_batch_rejected(folder, monkeypatch):
    deny_reading(monkeypatch, "data_batch_4")

    with pytest.raises(ValueError, match="cannot read CIFAR-10 file .*data_batch_4: Permission"):
        data.load_cifar10(folder)


def test_unreadable_archive_rejected(archive, monkeypatch):
    deny_reading(monkeypatch, archive.name)

    with pytest.raises(ValueError, match="cannot read CIFAR-10 archive .*tar.gz: Permission"):
        data.load_cifar10(archive)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files regardless of their permission bits")
def test_unreadable_batch_by_mode_rejected(folder):
    (folder / "test_batch").chmod(0)

    with pytest.raises(ValueError, match="cannot read CIFAR-10 file .*test_batch"):
        data.load_cifar10(folder)


# ---------------------------------------------------------------------------------------------
# Download and cache


def test_default_cache_dir_uses_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "xdg" / "fastkbn"


@pytest.mark.parametrize("xdg_value", [None, "", "relative/cache"])
def test_default_cache_dir_falls_back_to_home(tmp_path, monkeypatch, xdg_value):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg_value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg_value)

    assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "fastkbn"


def test_download_fills_cache(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_MD5", md5_of(archive))
    requested_urls = []

    def fake_download(url, destination, **kwargs):
        requested_urls.append(url)
        shutil.copyfile(archive, destination)

    monkeypatch.setattr(data, "download_file", fake_download)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = data.load_cifar10(n_val=10)

    cache = cached_archive_path(tmp_path)
    assert requested_urls == [data.CIFAR10_URL]
    assert dataset.source == str(cache)
    assert dataset.checksum_ok is True
    assert sorted(path.name for path in cache.parent.iterdir()) == [data.ARCHIVE_NAME]


def test_cached_archive_reused_without_download(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_MD5", md5_of(archive))
    cache = cached_archive_path(tmp_path)
    cache.parent.mkdir(parents=True)
    shutil.copyfile(archive, cache)

    dataset = data.load_cifar10(n_val=10)  # the autouse fixture fails any download

    assert dataset.source == str(cache)
    assert dataset.checksum_ok is True


def test_cached_archive_with_wrong_md5_downloaded_again(archive, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_MD5", md5_of(archive))
    cache = cached_archive_path(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"stale partial download")
    calls = []

    def fake_download(url, destination, **kwargs):
        calls.append(url)
        shutil.copyfile(archive, destination)

    monkeypatch.setattr(data, "download_file", fake_download)

    dataset = data.load_cifar10(n_val=10)

    assert len(calls) == 1
    assert md5_of(cache) == md5_of(archive)
    assert dataset.X_train.shape == (90, 3072)


def test_failed_download_leaves_no_file(tmp_path, monkeypatch):
    def interrupted_download(url, destination, **kwargs):
        with open(destination, "wb") as file:
            file.write(b"\x1f\x8b" + b"\x00" * 1000)
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(data, "download_file", interrupted_download)

    with pytest.raises(data.DownloadError, match="failed to download.*--data.*FASTKBN_DATA"):
        data.load_cifar10()
    assert list(cached_archive_path(tmp_path).parent.iterdir()) == []


def test_download_with_wrong_md5_leaves_no_file(archive, tmp_path, monkeypatch):
    def wrong_file_download(url, destination, **kwargs):
        shutil.copyfile(archive, destination)

    monkeypatch.setattr(data, "download_file", wrong_file_download)

    with pytest.raises(data.DownloadError, match=r"has MD5 \w+, expected c58f3010.*FASTKBN_DATA"):
        data.load_cifar10()
    assert list(cached_archive_path(tmp_path).parent.iterdir()) == []


def test_interrupted_download_leaves_no_file(tmp_path, monkeypatch):
    def interrupted_download(url, destination, **kwargs):
        with open(destination, "wb") as file:
            file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "download_file", interrupted_download)

    with pytest.raises(KeyboardInterrupt):
        data.load_cifar10()
    assert list(cached_archive_path(tmp_path).parent.iterdir()) == []


def test_download_file_copies_local_url(archive, tmp_path):
    destination = tmp_path / "copy.tar.gz"

    REAL_DOWNLOAD_FILE(archive.as_uri(), destination)

    assert destination.read_bytes() == archive.read_bytes()


# ---------------------------------------------------------------------------------------------
# describe_source


def test_describe_archive(archive):
    report = data.describe_source(archive)

    assert report["path"] == str(archive)
    assert report["origin"] == "argument"
    assert report["exists"] is True
    assert report["format"] == "archive"
    assert report["md5"] == md5_of(archive)
    assert report["checksum_ok"] is False
    assert report["batches"]["data_batch_1"] == (N_PER_BATCH, 3072)
    assert report["batches"]["test_batch"] == (N_PER_BATCH, 3072)
    assert report["n_train_rows"] == N_TRAIN_TOTAL
    assert report["n_test_rows"] == N_PER_BATCH
    assert report["label_names"] == list(LABEL_NAMES)


def test_describe_folder_from_env_var(folder, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(folder.parent))

    report = data.describe_source()

    assert report["origin"] == "FASTKBN_DATA"
    assert report["path"] == str(folder)
    assert report["format"] == "folder"
    assert report["md5"] is None
    assert report["checksum_ok"] is None


def test_describe_missing_cache_without_download(tmp_path):
    report = data.describe_source()  # the autouse fixture fails any download

    assert report["exists"] is False
    assert report["origin"] == "cache"
    assert report["path"] == str(cached_archive_path(tmp_path))
    assert report["batches"] is None


def test_describe_invalid_data_raises(folder):
    replace_file(folder, "data_batch_2", batch_with(labels=[12] * N_PER_BATCH))

    with pytest.raises(ValueError, match="data_batch_2.*label 12"):
        data.describe_source(folder)


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.mark.realdata
def test_real_archive_shapes(monkeypatch):
    if not REAL_DATA_PATH:
        pytest.skip("set FASTKBN_DATA to the CIFAR-10 archive or folder to run this test")
    monkeypatch.setenv(data.DATA_ENV_VAR, REAL_DATA_PATH)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not the official CIFAR-10 archive")
        dataset = data.load_cifar10()

    assert dataset.X_train.shape == (45000, 3072)
    assert dataset.X_val.shape == (5000, 3072)
    assert dataset.X_test.shape == (10000, 3072)
    assert dataset.y_train.shape == (45000,)
    assert len(dataset.label_names) == 10
    assert dataset.label_names[0] == "airplane"
    assert np.bincount(dataset.y_test, minlength=10).tolist() == [1000] * 10
