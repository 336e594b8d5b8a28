"""The digits data set ships with optimlab and loads offline; the split and scaling helpers."""

import hashlib
import socket
from importlib import resources

import numpy as np
import pytest

import optimlab as ol
from optimlab import datasets

CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits()


def test_loads_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_digits tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert ol.datasets.load_digits().X.shape == (1797, 64)


def test_shape_dtype_and_classes(digits):
    assert digits.X.shape == (1797, 64) and digits.X.dtype == np.float64
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.uint8
    assert np.bincount(digits.y).tolist() == CLASS_COUNTS
    assert digits.class_names == tuple("0123456789")


def test_values_and_scaling(digits):
    raw = datasets.load_digits(scale=False)
    assert raw.X.min() == 0 and raw.X.max() == 16
    assert np.array_equal(raw.X, np.round(raw.X))
    assert np.array_equal(digits.X, raw.X / 16) and 0 <= digits.X.min() and digits.X.max() == 1
    assert np.array_equal(raw.X, digits.images.reshape(1797, 64))
    assert np.array_equal(raw.y, digits.y)
    with pytest.raises(TypeError, match="scale"):
        datasets.load_digits(scale="yes")


def test_content_is_the_published_data(digits):
    # Checksums recorded in optimlab/data/README.md when the file was made.
    assert int(digits.images.sum(dtype=np.int64)) == 561718
    assert hashlib.sha256(digits.images.tobytes()).hexdigest() == (
        "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3")
    assert hashlib.sha256(digits.y.astype(np.uint8).tobytes()).hexdigest() == (
        "8ba4f891220f5e4c9c819638d1602d74b83618f167043c6da52a2a247841ddf0")
    assert digits.images[0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and digits.y[0] == 0


def test_data_file_is_small_and_documented():
    data = resources.files("optimlab").joinpath("data")
    assert len(data.joinpath("digits.npz").read_bytes()) < 60_000
    readme = data.joinpath("README.md").read_text()
    assert "10.24432/C50P49" in readme and "CC BY 4.0" in readme
    assert "Attribution 4.0" in data.joinpath("LICENSE").read_text()
    assert "CC BY 4.0" in datasets.load_digits.__doc__


def _split_indices(y, **kwargs):
    index = np.arange(len(y))
    s = datasets.train_test_split(index[:, None], y, **kwargs)
    assert np.array_equal(y[s.X_train[:, 0]], s.y_train)
    assert np.array_equal(y[s.X_test[:, 0]], s.y_test)
    return s.X_train[:, 0], s.X_test[:, 0]


@pytest.mark.parametrize("stratify", [True, False])
def test_split_is_a_disjoint_partition(digits, stratify):
    train, test = _split_indices(digits.y, stratify=stratify)
    assert len(test) == round(0.25 * 1797) == 449 and len(train) == 1348
    assert not set(train) & set(test)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))


def test_split_is_stratified(digits):
    for fraction in (0.25, 0.1, 0.5, 0.33):
        _, test = _split_indices(digits.y, test_fraction=fraction, seed=3)
        counts = np.bincount(digits.y[test], minlength=10)
        assert np.all(np.abs(counts - fraction * np.array(CLASS_COUNTS)) < 1)
        assert counts.sum() == round(fraction * 1797)


def test_split_is_seeded_and_shuffled(digits):
    a = _split_indices(digits.y, seed=0)
    b = _split_indices(digits.y, seed=0)
    c = _split_indices(digits.y, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(np.sort(a[1]), np.sort(c[1]))
    assert not np.all(np.diff(a[0]) > 0)  # training samples come in a random order


def test_split_unpacks_and_validates(digits):
    X_train, X_test, y_train, y_test = datasets.train_test_split(digits.X, digits.y)
    assert X_train.shape == (1348, 64) and X_test.shape == (449, 64)
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.train_test_split(digits.X, digits.y, test_fraction=1.0)
    with pytest.raises(ValueError, match="same number of samples"):
        datasets.train_test_split(digits.X, digits.y[:-1])
    with pytest.raises(ValueError, match="empty part"):
        datasets.train_test_split(digits.X[:3], digits.y[:3], test_fraction=0.1)


def test_standardize_uses_training_statistics(digits):
    s = datasets.train_test_split(digits.X, digits.y)
    train, test = datasets.standardize(s.X_train, s.X_test)
    constant = s.X_train.std(axis=0) == 0
    assert constant.any()  # blank corner pixels
    assert np.allclose(train.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(train.std(axis=0)[~constant], 1)
    assert np.all(np.isfinite(test)) and np.all(train[:, constant] == 0)
    mean, std = s.X_train.mean(axis=0)[~constant], s.X_train.std(axis=0)[~constant]
    assert np.allclose(test[:, ~constant], (s.X_test[:, ~constant] - mean) / std)
    assert np.array_equal(datasets.standardize(s.X_train), train)


def test_one_hot():
    Y = datasets.one_hot(np.array([2, 0, 1]), 3)
    assert Y.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
