"""Preprocessing is pixel-exact with its references, written here independently of the package.

- OpenAI's ``clip._transform`` = torchvision ``Compose([Resize(n, BICUBIC), CenterCrop(n),
  convert("RGB"), ToTensor(), Normalize(mean, std)])``: ported below from torchvision
  (``transforms/functional.py`` ``_compute_resized_output_size`` / ``center_crop`` /
  ``to_tensor`` / ``normalize`` and ``transforms/_functional_pil.py`` ``resize`` / ``pad`` /
  ``crop``), since torchvision cannot be imported beside this CPU torch.
- Hugging Face: ``CLIPImageProcessor`` itself (transformers' PIL backend).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from negationclip.models import ImageTransform, open_image

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# (width, height): landscape, portrait, square, odd, the short side already 224, smaller than
# the crop, extreme aspect ratios, sizes whose crop offset is x.5 (round-half-even matters)
SIZES = [(640, 480), (480, 640), (500, 375), (375, 500), (224, 224), (224, 300), (300, 224),
         (299, 224), (225, 224), (226, 224), (227, 225), (333, 101), (101, 333), (17, 13),
         (13, 17), (1, 1), (5, 60), (60, 5), (256, 256), (1023, 767), (612, 612), (427, 640),
         (640, 427), (2, 30), (123, 457)]


# --- reference 1: torchvision's Resize + CenterCrop on PIL, ToTensor, Normalize ----------

def _tv_resize(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.BICUBIC)


def _tv_pad(img: Image.Image, ltrb) -> Image.Image:
    fill = 0 if len(img.getbands()) == 1 else tuple([0] * len(img.getbands()))
    if img.mode == "P":
        palette = img.getpalette()
        out = ImageOps.expand(img, border=tuple(ltrb), fill=fill)
        out.putpalette(palette)
        return out
    return ImageOps.expand(img, border=tuple(ltrb), fill=fill)


def _tv_center_crop(img: Image.Image, n: int) -> Image.Image:
    w, h = img.size
    if n > w or n > h:
        ltrb = [(n - w) // 2 if n > w else 0, (n - h) // 2 if n > h else 0,
                (n - w + 1) // 2 if n > w else 0, (n - h + 1) // 2 if n > h else 0]
        img = _tv_pad(img, ltrb)
        w, h = img.size
        if (w, h) == (n, n):
            return img
    top, left = int(round((h - n) / 2.0)), int(round((w - n) / 2.0))
    return img.crop((left, top, left + n, top + n))


def openai_reference(img: Image.Image, n: int, resize: int | None = None) -> torch.Tensor:
    img = _tv_center_crop(_tv_resize(img, resize or n), n).convert("RGB")
    t = torch.from_numpy(np.array(img, copy=True)).view(img.size[1], img.size[0], 3)
    t = t.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    mean, std = torch.as_tensor(MEAN, dtype=torch.float32), torch.as_tensor(STD, dtype=torch.float32)
    return t.sub_(mean[:, None, None]).div_(std[:, None, None])


# --- reference 2: CLIPImageProcessor itself ------------------------------------------------

def hf_processor(n: int = 224, resize: int | None = None):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    return CLIPImageProcessorPil(size={"shortest_edge": resize or n}, crop_size={"height": n, "width": n})


def hf_reference(proc, img: Image.Image) -> torch.Tensor:
    return torch.as_tensor(np.asarray(proc(images=[img], return_tensors="np")["pixel_values"][0]))


def _image(w: int, h: int, mode: str, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed * 7919 + w * 31 + h)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "RGB":
        return rgb
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    if mode == "PA":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).convert("PA")
    if mode == "P-transparency":
        im = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        im.info["transparency"] = 3
        return im
    if mode in ("RGBA", "LA"):
        alpha = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
        base = rgb if mode == "RGBA" else rgb.convert("L")
        base = base.copy()
        base.putalpha(alpha)
        return base
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        assert im.mode == "I;16"
        return im
    return rgb.convert(mode)  # L, CMYK, 1, I, F, YCbCr


MODES = ["RGB", "L", "LA", "RGBA", "P", "PA", "P-transparency", "CMYK", "1", "I", "I;16", "F", "YCbCr"]


def _both(fn_ref, fn_ours):
    """Reference and ours; where PIL itself cannot run the reference on a mode, ours must fail too."""
    try:
        ref = fn_ref()
    except (ValueError, OSError) as e:
        with pytest.raises(Exception):
            fn_ours()
        pytest.skip(f"PIL cannot run the reference on this mode: {e}")
    return ref, fn_ours()


def test_openai_rule_matches_torchvision_on_every_size():
    t = ImageTransform(224)
    worst = 0.0
    for i, (w, h) in enumerate(SIZES):
        im = _image(w, h, "RGB", i)
        ours = t([im])[0]
        ref = openai_reference(im, 224)
        assert ours.shape == ref.shape == (3, 224, 224)
        worst = max(worst, (ours - ref).abs().max().item())
    assert worst == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_openai_rule_matches_torchvision_on_every_mode(mode):
    for i, (w, h) in enumerate([(300, 224), (37, 53), (225, 300)]):
        im = _image(w, h, mode, i)
        ref, ours = _both(lambda: openai_reference(im, 224), lambda: ImageTransform(224)([im])[0])
        assert torch.equal(ours, ref), (mode, w, h)


def test_hf_rule_matches_clip_image_processor_on_every_size():
    proc, t = hf_processor(), ImageTransform(224, rule="hf")
    worst = 0.0
    for i, (w, h) in enumerate(SIZES):
        im = _image(w, h, "RGB", i)
        ours, ref = t([im])[0], hf_reference(proc, im)
        assert ours.shape == ref.shape == (3, 224, 224)
        worst = max(worst, (ours - ref).abs().max().item())
    assert worst == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_hf_rule_matches_clip_image_processor_on_every_mode(mode):
    proc, t = hf_processor(), ImageTransform(224, rule="hf")
    for i, (w, h) in enumerate([(300, 224), (37, 53), (225, 300)]):
        im = _image(w, h, mode, i)
        ref, ours = _both(lambda: hf_reference(proc, im), lambda: t([im])[0])
        assert torch.equal(ours, ref), (mode, w, h)


@pytest.mark.parametrize("crop,resize", [(224, 200), (30, 24), (33, 31)])
def test_padding_when_the_crop_is_larger_than_the_resized_image(crop, resize):
    """Both references pad with zeros; torchvision puts (n - size) // 2 before, HF ceil(...)."""
    proc = hf_processor(crop, resize)
    for i, (w, h) in enumerate([(300, 224), (224, 300), (50, 50), (41, 17)]):
        im = _image(w, h, "RGB", i)
        assert torch.equal(ImageTransform(crop, resize_to=resize)([im])[0],
                           openai_reference(im, crop, resize)), (w, h)
        assert torch.equal(ImageTransform(crop, resize_to=resize, rule="hf")([im])[0],
                           hf_reference(proc, im)), (w, h)


def test_batches_equal_single_images_and_rules_differ_where_the_references_do():
    ims = [_image(w, h, "RGB", i) for i, (w, h) in enumerate(SIZES)]
    t = ImageTransform(224)
    batch = t(ims)
    assert all(torch.equal(batch[i], t([im])[0]) for i, im in enumerate(ims))
    # 299x224: the crop offset is 37.5 -> torchvision rounds to 38 (half-even), HF floors to 37
    im = _image(299, 224, "RGB", 1)
    assert not torch.equal(t([im])[0], ImageTransform(224, rule="hf")([im])[0])
    assert ImageTransform(224).fingerprint() != ImageTransform(224, rule="hf").fingerprint()


def test_hf_config_round_trip_keeps_the_rule(tmp_path):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    t = ImageTransform(32, rule="openai")
    cfg = t.to_hf_config()
    assert ImageTransform.from_hf_config(cfg, 224) == t
    # a plain Hugging Face config (no negationclip key) follows the processor's rule
    plain = {k: v for k, v in cfg.items() if k != "negationclip_rule"}
    assert ImageTransform.from_hf_config(plain, 224).rule == "hf"
    # and CLIPImageProcessor reads the written config with the same geometry and statistics
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    proc = CLIPImageProcessorPil.from_pretrained(str(tmp_path))
    im = _image(90, 50, "RGB", 3)
    assert torch.equal(ImageTransform.from_hf_config(plain, 224)([im])[0], hf_reference(proc, im))


def test_open_image_keeps_or_converts_the_mode(tmp_path):
    p = tmp_path / "a.png"
    _image(40, 30, "RGBA").save(p)
    assert open_image(p).mode == "RGB" and open_image(p, mode=None).mode == "RGBA"
    im = open_image(p, mode=None)
    # preprocess(Image.open(p)) in OpenAI's README sees the RGBA image
    with Image.open(p) as raw:
        assert torch.equal(ImageTransform(224)([im])[0], openai_reference(raw, 224))


def test_lookup_table_holds_the_reference_arithmetic():
    """Every uint8 value through ToTensor+Normalize (torch float32) equals the table."""
    im = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (3, 1)).T.reshape(16, 16, 3), "RGB")
    t = ImageTransform(16)
    assert torch.equal(t([im])[0], openai_reference(im, 16))
    assert not math.isnan(t([im]).sum().item())


def test_encode_images_opens_paths_in_their_own_mode(tmp_path):
    from negationclip.models import encode_images, tiny_clip_bundle

    p = tmp_path / "a.png"
    _image(50, 40, "RGBA", 5).save(p)
    b = tiny_clip_bundle(seed=1)
    with Image.open(p) as raw:
        raw.load()
        native = encode_images(b, [raw])
        rgb = encode_images(b, [raw.convert("RGB")])
    by_path = encode_images(b, [p])
    assert torch.equal(by_path, native) and not torch.allclose(by_path, rgb, atol=1e-4)
