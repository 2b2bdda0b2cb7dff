"""Tests of keras_nna.datasets: offline loaders, the IDX parser and image helpers."""

import gzip
import os

import numpy as np
import pytest

from keras_nna import datasets

HAS_DEBIAN_FASHION = os.path.isdir(datasets.FASHION_MNIST_DIR)


def _write_fashion_dir(folder, n_train=12, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        datasets.write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), x)
        datasets.write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), y)
        arrays[split] = (x, y)
    return arrays


def _check_split(train, test, image_shape):
    for x, y in (train, test):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == image_shape
        assert y.dtype == np.int32 and y.shape == (len(x),)


# --- load_digits -------------------------------------------------------------------------------

def test_load_digits_shapes_range_balance():
    train, test = datasets.load_digits()
    _check_split(train, test, (8, 8, 1))
    assert len(train[0]) + len(test[0]) == 1797
    assert len(test[0]) == 360
    x = np.concatenate([train[0], test[0]])
    assert x.min() == 0 and x.max() == 255
    # 17 grey levels 0..16 mapped to round(v * 255 / 16).
    assert set(np.unique(x)) <= set(np.round(np.arange(17) * 255 / 16).astype(int))
    counts = np.bincount(test[1], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified


def test_load_digits_is_deterministic_and_seeded():
    a = datasets.load_digits(seed=3)
    b = datasets.load_digits(seed=3)
    c = datasets.load_digits(seed=4)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert not np.array_equal(a[0][1], c[0][1])


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2", True])
def test_load_digits_rejects_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size"):
        datasets.load_digits(test_size=bad)


# --- load_faces --------------------------------------------------------------------------------

def test_load_faces_shapes_range_balance():
    train, test = datasets.load_faces()
    _check_split(train, test, (25, 25, 1))
    assert (len(train[0]), len(test[0])) == (150, 50)
    assert np.bincount(train[1]).tolist() == [75, 75]
    assert np.bincount(test[1]).tolist() == [25, 25]
    x = np.concatenate([train[0], test[0]])
    assert x.min() == 0 and x.max() == 255


def test_load_faces_labels_follow_lfw_subset_order():
    from skimage import data as sk_data

    raw = np.round(np.asarray(sk_data.lfw_subset()) * 255).astype(np.uint8)
    train, test = datasets.load_faces(test_size=0.5, seed=1)
    # Every returned image is found in the source with the documented label.
    for x, y in (train, test):
        for image, label in zip(x[:10, ..., 0], y[:10]):
            index = int(np.flatnonzero((raw == image).all(axis=(1, 2)))[0])
            assert label == (1 if index < 100 else 0)


# --- IDX parser --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    datasets.write_idx(path, array)
    out = datasets.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    np.testing.assert_array_equal(datasets.read_idx(path, limit=1), array[:1])
    np.testing.assert_array_equal(datasets.read_idx(path, limit=99), array)


def test_idx_header_is_big_endian(tmp_path):
    path = tmp_path / "x.gz"
    datasets.write_idx(path, np.zeros((3, 2), np.uint8))
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[:4] == bytes([0, 0, 0x08, 2])
    assert raw[4:12] == bytes([0, 0, 0, 3, 0, 0, 0, 2])
    assert len(raw) == 12 + 6


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"])
def test_idx_corrupt_magic(tmp_path, magic):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as f:
        f.write(magic + bytes([0, 0, 0, 2, 1, 2]))
    with pytest.raises(ValueError, match="magic number.*received bytes"):
        datasets.read_idx(path)


def test_idx_truncated_data_and_dims(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(ValueError, match="expected 5 bytes.*received 2.*truncated"):
        datasets.read_idx(path)
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 5]))
    with pytest.raises(ValueError, match="dimensions"):
        datasets.read_idx(path)


def test_idx_broken_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(ValueError, match="gzip"):
        datasets.read_idx(path)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="received dtype int64"):
        datasets.write_idx(tmp_path / "x", np.zeros(3, np.int64))


# --- load_fashion_mnist ------------------------------------------------------------------------

def test_fashion_from_synthetic_dir(tmp_path):
    arrays = _write_fashion_dir(tmp_path)
    train, test = datasets.load_fashion_mnist(path=tmp_path)
    _check_split(train, test, (28, 28, 1))
    np.testing.assert_array_equal(train[0][..., 0], arrays["train"][0])
    np.testing.assert_array_equal(test[1], arrays["t10k"][1])
    train, test = datasets.load_fashion_mnist(path=str(tmp_path), limit_train=5, limit_test=3)
    assert (len(train[0]), len(train[1]), len(test[0]), len(test[1])) == (5, 5, 3, 3)


def test_fashion_env_var(tmp_path, monkeypatch):
    _write_fashion_dir(tmp_path, n_train=4, n_test=2)
    monkeypatch.setenv("KERAS_NNA_FASHION_MNIST", str(tmp_path))
    train, test = datasets.load_fashion_mnist()
    assert (len(train[0]), len(test[0])) == (4, 2)


def test_fashion_missing_file(tmp_path):
    _write_fashion_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*apt-get install"):
        datasets.load_fashion_mnist(path=tmp_path)


def test_fashion_mismatched_labels(tmp_path):
    _write_fashion_dir(tmp_path)
    datasets.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        datasets.load_fashion_mnist(path=tmp_path)


def test_fashion_wrong_image_shape(tmp_path):
    _write_fashion_dir(tmp_path)
    datasets.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        datasets.load_fashion_mnist(path=tmp_path)


def test_fashion_missing_dir_no_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(path=tmp_path / "nope", allow_download=False)


def test_fashion_missing_dir_keras_fails(tmp_path, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError) as info:
        datasets.load_fashion_mnist(path=tmp_path / "nope")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "keras.datasets" in message and "no network" in message


def test_fashion_missing_dir_keras_fallback(tmp_path, monkeypatch):
    import keras

    x = np.arange(6 * 28 * 28, dtype=np.uint8).reshape(6, 28, 28)
    y = np.arange(6, dtype=np.uint8)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data",
                        lambda: ((x, y), (x[:2], y[:2])))
    train, test = datasets.load_fashion_mnist(path=tmp_path / "nope", limit_train=4)
    _check_split(train, test, (28, 28, 1))
    assert (len(train[0]), len(test[0])) == (4, 2)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10"])
def test_fashion_rejects_bad_limit(tmp_path, bad):
    with pytest.raises(ValueError, match="limit_train"):
        datasets.load_fashion_mnist(path=tmp_path, limit_train=bad)


@pytest.mark.skipif(not HAS_DEBIAN_FASHION, reason="apt package dataset-fashion-mnist missing")
def test_fashion_debian_package_subset():
    train, test = datasets.load_fashion_mnist(limit_train=2000, limit_test=1000)
    _check_split(train, test, (28, 28, 1))
    assert (len(train[0]), len(test[0])) == (2000, 1000)
    assert train[0].max() == 255 and train[0].min() == 0
    for y in (train[1], test[1]):
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10 and counts.min() > 0.6 * len(y) / 10


# --- helpers -----------------------------------------------------------------------------------

def test_resize_images_matches_tf_rounding():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 7, 9, 2), dtype=np.uint8)
    out = datasets.resize_images(x, (16, 12), batch_size=2)
    assert out.shape == (5, 16, 12, 2) and out.dtype == np.uint8
    expected = np.clip(np.round(tf.image.resize(x.astype(np.float32), (16, 12)).numpy()), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_resize_images_constant_and_identity():
    x = np.full((2, 5, 5, 1), 200, np.uint8)
    np.testing.assert_array_equal(datasets.resize_images(x, (11, 3)), 200)
    same = datasets.resize_images(x, (5, 5))
    np.testing.assert_array_equal(same, x)
    assert same is not x


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 4, 4, 1), np.float32), r"Expected uint8 images. Received dtype float32.*np.clip"),
    (np.zeros((4, 4, 1), np.uint8), r"Expected images of shape \(N, height, width, channels\).*"
                                    r"Received: shape \(4, 4, 1\).*x\[\.\.\., None\]"),
], ids=["float32", "rank3"])
def test_helpers_reject_bad_images(bad, match):
    with pytest.raises(ValueError, match="`resize_images`: " + match):
        datasets.resize_images(bad, (8, 8))
    with pytest.raises(ValueError, match="`to_rgb`: " + match):
        datasets.to_rgb(bad)


@pytest.mark.parametrize("size", [(8,), (0, 8), (8.0, 8), "96"])
def test_resize_images_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        datasets.resize_images(np.zeros((1, 4, 4, 1), np.uint8), size)


def test_to_rgb():
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 1)
    rgb = datasets.to_rgb(x)
    assert rgb.shape == (2, 3, 3, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], x[..., 0])
    assert datasets.to_rgb(rgb) is rgb
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 channels"):
        datasets.to_rgb(np.zeros((1, 2, 2, 2), np.uint8))


def test_prepare_for_akidanet_on_faces():
    (x_train, _), _ = datasets.load_faces()
    out = datasets.prepare_for_akidanet(x_train[:4], size=(96, 96))
    assert out.shape == (4, 96, 96, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_array_equal(out, datasets.to_rgb(datasets.resize_images(x_train[:4],
                                                                              (96, 96))))
