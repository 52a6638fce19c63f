"""The one image opener: every way a file can fail is a NegationClipError naming it; the
pixel limit (decompression bombs) is configurable; encode fails clearly, cache users skip."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from negationclip.models import ImageEmbeddingCache, open_image, tiny_clip_bundle
from negationclip.models.transform import image_header_size, max_image_pixels
from negationclip.utils import NegationClipError


def _png_header_only(path, w, h):
    """A PNG whose header claims w x h pixels and holds no data (a header-only bomb)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    ok = tmp_path / "ok.png"
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(ok)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    return {"ok": ok, "trunc": trunc, "text": text, "bomb": _png_header_only(tmp_path / "bomb.png", 20000, 20000),
            "dir": tmp_path, "missing": tmp_path / "missing.png"}


@pytest.mark.parametrize("name,msg", [("trunc", "unreadable image"), ("text", "not an image"),
                                      ("bomb", "exceeds the limit"), ("dir", "is a folder"),
                                      ("missing", "not found")])
def test_every_failure_is_a_named_error(files, name, msg):
    with pytest.raises(NegationClipError, match=msg) as e:
        open_image(files[name])
    assert str(files[name]) in str(e.value)


def test_the_pixel_limit_is_configurable(files, monkeypatch):
    assert open_image(files["ok"]).size == (40, 40)
    assert max_image_pixels() == Image.MAX_IMAGE_PIXELS  # default: PIL's
    monkeypatch.setenv("NEGATIONCLIP_MAX_IMAGE_PIXELS", "1000")  # a real 40x40 image is now a "bomb"
    with pytest.raises(NegationClipError, match="1600 pixels exceeds the limit of 1000"):
        open_image(files["ok"])
    with pytest.raises(NegationClipError, match="exceeds"):
        image_header_size(files["ok"])
    monkeypatch.setenv("NEGATIONCLIP_MAX_IMAGE_PIXELS", "none")
    assert image_header_size(files["bomb"]) == (20000, 20000)  # trusted: header read, no decode
    monkeypatch.setenv("NEGATIONCLIP_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(NegationClipError, match="NEGATIONCLIP_MAX_IMAGE_PIXELS"):
        open_image(files["ok"])


def test_pils_own_bomb_error_is_also_translated(files, monkeypatch):
    """Above twice PIL's limit PIL raises DecompressionBombError (not an OSError) itself."""
    monkeypatch.setenv("NEGATIONCLIP_MAX_IMAGE_PIXELS", str(10 ** 12))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert open_image(files["ok"]).size == (40, 40)  # ours governs; PIL's own check is lifted
    assert Image.MAX_IMAGE_PIXELS == 100  # and restored


def test_cache_counts_bad_images_as_failures_instead_of_aborting(files):
    b = tiny_clip_bundle()
    keys = [str(files[k]) for k in ("ok", "bomb", "trunc", "text")]
    res = ImageEmbeddingCache(False).embed(b, keys, open_image, batch_size=2)
    assert res.ok.tolist() == [True, False, False, False]
    assert set(res.failed) == set(keys[1:])
    assert "exceeds the limit" in res.failed[keys[1]]
