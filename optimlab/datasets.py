"""A real data set shipped with optimlab, and the few helpers a classification experiment needs.

:func:`load_digits` reads the UCI handwritten digits (1797 images of 8 x 8 pixels, 10 classes)
from a 45 kB file inside the package: nothing is downloaded.

    digits = ol.datasets.load_digits()
    split = ol.datasets.train_test_split(digits.X, digits.y, test_fraction=0.25, seed=0)
    X_train, X_test = ol.datasets.standardize(split.X_train, split.X_test)
"""

from importlib import resources
from typing import NamedTuple

import numpy as np

N_CLASSES = 10


class Digits(NamedTuple):
    """The digits data set: ``X`` (n, 64) float64, ``y`` (n,) int64 in 0..9, ``images`` the
    raw (n, 8, 8) uint8 pixel counts in 0..16, and ``class_names`` ``("0", ..., "9")``."""

    X: np.ndarray
    y: np.ndarray
    images: np.ndarray
    class_names: tuple


class Split(NamedTuple):
    """A train/test split; unpacks as ``X_train, X_test, y_train, y_test``."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def load_digits(scale=True):
    """The UCI optical recognition of handwritten digits data (Alpaydin & Kaynak, 1998).

    1797 images of handwritten digits 0-9 written by 13 people (the test set of the UCI
    collection). Each image is 8 x 8 pixels; a pixel counts the "on" pixels, 0..16, in a 4 x 4
    block of a 32 x 32 bitmap. Class counts for 0..9: 178, 182, 177, 183, 181, 182, 181, 179,
    174, 180.

    Args:
        scale: if True (default) ``X`` holds the pixels divided by 16, in [0, 1]; if False the
            raw counts 0..16 (as float64).

    Returns:
        :class:`Digits` with ``X`` of shape (1797, 64) float64 (each row an image, row-major),
        ``y`` of shape (1797,) int64, ``images`` of shape (1797, 8, 8) uint8 (raw counts) and
        ``class_names``.

    Source: UCI Machine Learning Repository, https://doi.org/10.24432/C50P49, license CC BY 4.0
    (Creative Commons Attribution 4.0 International). Cite as: E. Alpaydin and C. Kaynak (1998),
    *Optical Recognition of Handwritten Digits* [Dataset], UCI Machine Learning Repository.
    The file ``optimlab/data/digits.npz`` stores the data unchanged as uint8 arrays; its README
    and LICENSE give the details.
    """
    if not isinstance(scale, bool | np.bool_):
        raise TypeError(f"scale must be True or False; got {scale!r}")
    with resources.files(__package__).joinpath("data", "digits.npz").open("rb") as f, \
            np.load(f, allow_pickle=False) as data:
        images = data["images"]
        y = data["target"].astype(np.int64)
    X = images.reshape(len(images), -1).astype(np.float64)
    if scale:
        X /= 16.0
    return Digits(X, y, images, tuple(str(k) for k in range(N_CLASSES)))


def train_test_split(X, y, test_fraction=0.25, seed=0, stratify=True):
    """Split ``X`` and ``y`` at random into a training and a test part.

    ``round(test_fraction * n)`` samples go to the test part. With ``stratify`` (default) every
    class is split in the same proportion: class ``c`` with ``n_c`` samples gives
    ``floor(test_fraction * n_c)`` of them to the test part, and the samples still missing go
    one each to the classes with the largest remainders, so the class frequencies of both parts
    match those of the whole to within one sample per class. The two parts are disjoint, and
    each is in a random order (shuffled by ``np.random.default_rng(seed)``), so a given seed
    always gives the same split.

    Returns:
        :class:`Split` ``(X_train, X_test, y_train, y_test)``.
    """
    X, y = np.asarray(X), np.asarray(y)
    if y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X and y must have the same number of samples and y must be 1-D; "
                         f"got X of shape {X.shape} and y of shape {y.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    n = len(y)
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction={test_fraction!r} of {n} samples leaves an empty part")
    rng = np.random.default_rng(seed)
    if stratify:
        classes, y_index = np.unique(y, return_inverse=True)
        counts = np.bincount(y_index)
        quota = test_fraction * counts
        per_class = np.floor(quota).astype(np.int64)
        missing = n_test - per_class.sum()
        per_class[np.argsort(-(quota - per_class), kind="stable")[:missing]] += 1
        test = np.concatenate([rng.permutation(np.flatnonzero(y_index == k))[:per_class[k]]
                               for k in range(len(classes))])
    else:
        test = rng.permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    train = rng.permutation(np.flatnonzero(~is_test))
    test = rng.permutation(test)
    return Split(X[train], X[test], y[train], y[test])


def standardize(train, test=None):
    """Scale every feature to mean 0 and standard deviation 1 *on the training data*.

    The mean and standard deviation are computed on ``train`` only and applied to both parts,
    so that nothing about the test data leaks into training. Constant features (standard
    deviation 0, such as the always-blank corner pixels of the digits) are only centred.

    Returns:
        ``(train_scaled, test_scaled)``, or ``train_scaled`` alone when ``test`` is None.
    """
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0.0] = 1.0
    scaled = (train - mean) / std
    if test is None:
        return scaled
    return scaled, (np.asarray(test, dtype=np.float64) - mean) / std


def one_hot(y, n_classes=N_CLASSES, dtype=np.float64):
    """The (n, n_classes) matrix :math:`Y` with :math:`Y_{ic} = 1` if :math:`y_i = c`, else 0."""
    y = np.asarray(y)
    return (y[..., None] == np.arange(n_classes)).astype(dtype)
