"""read_image: channel handling, depths, EXIF orientation, and errors that name the file."""
import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from detection.data.image_io import ImageReadError, read_image


def test_color_png_bgr_and_rgb(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    path = str(tmp_path / "c.png")
    cv2.imwrite(path, img)
    bgr = read_image(path, "BGR")
    assert bgr.dtype == np.uint8 and bgr.shape == (7, 11, 3)
    np.testing.assert_array_equal(bgr, img)
    np.testing.assert_array_equal(read_image(path, "RGB"), img[:, :, ::-1])


def test_gray_rgba_and_16bit(tmp_path):
    gray = np.arange(6 * 5, dtype=np.uint8).reshape(6, 5) * 8
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(str(tmp_path / "g.png"))
    assert out.shape == (6, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)

    bgra = np.random.default_rng(1).integers(0, 256, (4, 9, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), bgra[:, :, :3])  # alpha dropped

    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 257 * 20)  # 257*k -> k exactly
    deep[0, 0] = 65535
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    out = read_image(str(tmp_path / "d.png"))
    expected = (np.arange(12).reshape(3, 4) * 20).astype(np.uint8)
    expected[0, 0] = 255
    np.testing.assert_array_equal(out[:, :, 0], expected)

    deep_color = np.full((2, 3, 3), 65535, np.uint16)
    deep_color[..., 1] = 0
    cv2.imwrite(str(tmp_path / "dc.png"), deep_color)
    np.testing.assert_array_equal(read_image(str(tmp_path / "dc.png"))[0, 0], [255, 0, 255])


def test_exif_orientation_is_applied(tmp_path):
    raw = np.zeros((20, 40, 3), np.uint8)
    raw[:6, :6] = 255  # a white marker at the stored top-left corner
    pil = Image.fromarray(raw)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = str(tmp_path / "exif.jpg")
    pil.save(path, exif=exif, quality=95)
    out = read_image(path, "RGB")
    assert out.shape == (40, 20, 3)  # displayed size: height and width swapped
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 2
    assert out[:6, -6:].mean() > 200 and out[-6:, :6].mean() < 50  # marker now top-right


@pytest.mark.parametrize("content", [None, b"", b"not an image at all" * 10, b"\xff\xd8\xff\xe0" + b"\x00" * 50])
def test_missing_or_corrupt_file_names_the_file(tmp_path, content):
    path = tmp_path / "broken_image_123.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken_image_123.jpg"):
        read_image(str(path))
