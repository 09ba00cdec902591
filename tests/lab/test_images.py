"""Sample grids through Pillow: the PNG holds the grid's pixels, scaled by repetition."""

import numpy as np
import pytest

pytest.importorskip("PIL", reason="Pillow is not installed (the lab extra)")
from PIL import Image

from edgediff.lab.images import grid, to_uint8, write_png


def test_png_round_trip_and_grid_layout(tmp_path):
    imgs = to_uint8(np.linspace(-1, 1, 5 * 64).reshape(5, 1, 8, 8))
    canvas = grid(imgs, columns=3, pad=1)
    assert canvas.shape == (2 * 9 + 1, 3 * 9 + 1, 1)
    write_png(tmp_path / "g.tmp", canvas, scale=2)  # the format is not taken from the name
    with Image.open(tmp_path / "g.tmp") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "L", (56, 38))
        back = np.asarray(im)
    np.testing.assert_array_equal(back[::2, ::2], canvas[..., 0])  # each pixel 2×2
    np.testing.assert_array_equal(back[1::2, 1::2], canvas[..., 0])
    np.testing.assert_array_equal(back[2:18:2, 2:18:2], imgs[0, 0])  # first tile
    assert np.all(canvas[0] == 0) and np.all(canvas[:, 9] == 0)  # black between tiles
    assert to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]


def test_rgb_images_stay_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    write_png(tmp_path / "c.png", rgb)
    with Image.open(tmp_path / "c.png") as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
