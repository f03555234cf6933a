"""A very large image is decoded in about its own size of memory (H2), and the reduction it takes first changes
the network's input only by interpolation noise."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from microcnn import images

MEASURE = """
import resource, sys
from microcnn import images
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
decoded = images.decode(sys.argv[1], (150, 150))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, decoded.pixels.shape)
"""


@pytest.mark.parametrize("mode", ["RGB", "I;16"])
def test_a_20_megapixel_png_decodes_in_about_its_own_size(tmp_path, mode):
    h, w = 4000, 5000
    rng = np.random.default_rng(0)
    if mode == "RGB":
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[::7, ::5] = rng.integers(0, 255, (1, w // 5, 3), dtype=np.uint8)
        decoded_bytes = h * w * 4  # Pillow keeps RGB as 4 bytes a pixel
    else:
        pixels = np.zeros((h, w), np.uint16)
        pixels[::7, ::5] = 40000
        decoded_bytes = h * w * 2
    path = tmp_path / "big.png"
    Image.fromarray(pixels).save(path, compress_level=1)
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True, capture_output=True, text=True,
                          cwd=tmp_path)
    grew = int(proc.stdout.split()[0])
    assert grew < 1.5 * decoded_bytes, f"{grew / 1e6:.0f} MB for a {decoded_bytes / 1e6:.0f} MB image"


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_the_reduction_changes_the_input_only_slightly(tmp_path, monkeypatch, mode):
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:900, 0:1200]
    smooth = (np.sin(x / 40.0) + np.cos(y / 55.0) + 2) / 4
    if mode == "I;16":
        pixels, scale = (smooth * 60000 + rng.normal(0, 500, smooth.shape)).clip(0, 65535).astype(np.uint16), 65535
    else:
        base = (smooth * 250 + rng.normal(0, 4, smooth.shape)).clip(0, 255).astype(np.uint8)
        pixels, scale = (base if mode == "L" else np.stack([base, base[::-1], 255 - base], axis=2)), 255
    path = tmp_path / "image.png"
    Image.fromarray(pixels).save(path)
    direct = images.decode(path, (60, 80)).pixels.astype(np.float64)
    monkeypatch.setattr(images, "REDUCE_ABOVE_PIXELS", 0)
    reduced = images.decode(path, (60, 80))
    assert reduced.mode == mode and reduced.pixels.shape == direct.shape
    assert np.abs(reduced.pixels.astype(np.float64) - direct).mean() / scale < 0.01
