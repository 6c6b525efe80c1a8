"""Image sizes from file headers (PNG, baseline and progressive JPEG), other formats decoded."""
import cv2
import numpy as np
import pytest

from srlane.data.image_size import image_size


def test_image_size_reads_headers(tmp_path):
    image = np.zeros((33, 57, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    cv2.imwrite(str(tmp_path / "b.jpg"), image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    cv2.imwrite(str(tmp_path / "c.png"), image)
    cv2.imwrite(str(tmp_path / "d.bmp"), image)
    assert [image_size(tmp_path / f) for f in ("a.jpg", "b.jpg", "c.png", "d.bmp")] == [(57, 33)] * 4
    (tmp_path / "e.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read the image size"):
        image_size(tmp_path / "e.jpg")
