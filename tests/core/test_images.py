import zlib

import numpy as np

from edgediff.images import grid, to_uint8, write_png


def read_png_gray(path):
    """Independent minimal reader for 8-bit grayscale, filter-0 PNGs."""
    data, pos, idat = path.read_bytes(), 8, b""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert zlib.crc32(tag + body) == int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big")
        if tag == b"IHDR":
            w, h = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
        if tag == b"IDAT":
            idat += body
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:]


def test_png_round_trip_and_grid_layout(tmp_path):
    imgs = to_uint8(np.linspace(-1, 1, 5 * 64).reshape(5, 1, 8, 8))
    canvas = grid(imgs, columns=3, pad=1, scale=2)
    assert canvas.shape == ((2 * 9 + 1) * 2, (3 * 9 + 1) * 2, 1)
    write_png(tmp_path / "g.png", canvas)
    back = read_png_gray(tmp_path / "g.png")
    np.testing.assert_array_equal(back, canvas[..., 0])
    np.testing.assert_array_equal(back[2:18:2, 2:18:2], imgs[0, 0])   # first tile, unscaled
    assert to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]
