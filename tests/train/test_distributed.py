"""Two processes (gloo, CPU) on a global batch give the weights of one process on that batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from negationclip.train import TrainConfig, finetune

from .conftest import make_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp, **kw) -> TrainConfig:
    # 9 training captions, batch 4: batches of 4, 4 and 1 -> the last is dropped with 2 processes
    # (fewer rows than processes), so use a val split leaving a multiple-friendly train set.
    base = dict(epochs=2, batch_size=5, lr=1e-3, val_fraction=0.0, seed=3,
                hard_negatives="original", hard_negative_margin=0.2, max_grad_norm=1.0,
                mine_negative_images=True,
                cache_dir=os.path.join(tmp, "cache"))
    base.update(kw)
    return TrainConfig(**base)


def _tiny():
    from negationclip.models import tiny_clip_bundle
    return tiny_clip_bundle(seed=0, text_width=32, text_layers=1, vision_width=32,
                            vision_layers=1, embed_dim=16)


def _worker(rank: int, world: int, port: int, tmp: str, recs: list) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      NEGATIONCLIP_NO_PROGRESS="1")
    torch.set_num_threads(1)
    finetune(_tiny(), recs, _config(tmp), os.path.join(tmp, "ddp"),
             image_root=os.path.join(tmp, "data", "images"), verbose=False)


@pytest.mark.timeout(120)
def test_two_gloo_processes_equal_one_process(tmp_path):
    recs = make_dataset(tmp_path / "data", n=10)
    one = finetune(_tiny(), recs, _config(str(tmp_path)), tmp_path / "single",
                   image_root=tmp_path / "data" / "images", verbose=False)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), recs), nprocs=2, join=True)
    a = load_file(str(tmp_path / "single" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "state" / "trainable.safetensors"))
    assert a.keys() == b.keys() and "logit_scale" in a
    start = dict(_tiny().model.named_parameters())
    for k in a:
        if k.endswith("k_proj.bias"):
            # its true gradient is exactly zero (a constant added to every key of a softmax row);
            # Adam turns the ~1e-8 float noise of either run into full-size steps
            continue
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # and training really moved the weights (the comparison is not trivially true)
    assert not torch.allclose(a["text_projection.weight"], start["text_projection.weight"], atol=1e-4)
    la = [h["loss"] for h in one.history if h["kind"] == "train"]
    import json
    lb = [json.loads(line)["loss"] for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()
          if json.loads(line)["kind"] == "train"]
    assert len(la) == len(lb) == 4
    assert any(e.hard_image for e in _mined(tmp_path, recs))  # the extra image columns were used
    assert all(abs(x - y) < 1e-4 for x, y in zip(la, lb))  # the logged loss is the true global loss


def _mined(tmp_path, recs):
    from negationclip.train.data import (build_examples, coerce_records, mine_negative_images,
                                         originals_by_image)
    r = coerce_records(recs)
    ex, _ = build_examples(r, image_root=tmp_path / "data" / "images")
    return mine_negative_images(ex, originals_by_image(r, tmp_path / "data" / "images"))[0]
