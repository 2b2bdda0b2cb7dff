"""The one uint8 image check (keras_nna.export.images.check_images)."""

import numpy as np
import pytest

from keras_nna.export.images import check_images, shape_error

SHAPE = (4, 3, 2)
GOOD = np.arange(2 * 4 * 3 * 2, dtype=np.uint8).reshape(2, 4, 3, 2)


@pytest.mark.parametrize("dtype", ["uint8", "int32", "int64", "float32", "float64"])
def test_whole_numbers_in_range_are_converted(dtype):
    out = check_images(GOOD.astype(dtype), SHAPE)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, GOOD)


def test_uint8_passes_through_without_copy():
    assert check_images(GOOD, SHAPE) is GOOD


BAD = [
    ("fraction", lambda x: x.astype(np.float32) + 0.5, {}, r"whole numbers in \[0, 255\].*np\.clip"),
    ("above", lambda x: x.astype(np.int32) + 256, {}, r"values in \[256, 303\]"),
    ("negative", lambda x: x.astype(np.int32) - 1, {}, r"values in \[-1, 46\]"),
    ("nan", lambda x: np.full(x.shape, np.nan), {}, r"whole numbers"),
    ("strings", lambda x: x.astype(str), {}, r"Expected uint8 images. Received dtype <U"),
    ("rank3", lambda x: x[0], {}, r"Received: shape \(4, 3, 2\). Add a batch axis with x\[None\]"),
    ("height", lambda x: x[:, :-1], {}, r"Expected images of shape \(N, 4, 3, 2\).*Resize"),
    ("4-bit", lambda x: x, {"input_bits": 4}, r"whole numbers in \[0, 15\].*np\.clip\(np\.round\(x\), 0, 15\)"),
    ("no-convert", lambda x: x.astype(np.int32), {"convert": False}, r"Received dtype int32"),
]


@pytest.mark.parametrize("bad,kwargs,match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_errors_name_expected_received_and_fix(bad, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_images(bad(GOOD), SHAPE, **kwargs)


def test_single_image_and_any_shape():
    assert check_images(GOOD[0], SHAPE, allow_single=True).shape == (1,) + SHAPE
    assert check_images(np.zeros((3, 7, 7, 1), np.uint8)).shape == (3, 7, 7, 1)
    with pytest.raises(ValueError, match=r"`f`: Expected images of shape \(N, height, width, "
                                         r"channels\).*x\[\.\.\., None\]"):
        check_images(np.zeros((7, 7, 1)), where="`f`: ")


def test_shape_error_with_unknown_sizes():
    assert "Received: shape (None, 4, 2)" in str(shape_error([None, 4, 2], SHAPE))
