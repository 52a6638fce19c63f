"""End to end on NegWorld: export -> P1 records (offline rules backends) -> a short fine-tune."""

import pytest

from negationclip.cli import main
from negationclip.train import TrainConfig, finetune


@pytest.mark.timeout(120)
def test_short_run_on_negworld_p1_lowers_validation_loss(tmp_path, capsys):
    from negationclip.models import tiny_clip_bundle

    world, p1 = tmp_path / "world", tmp_path / "p1.jsonl"
    assert main(["world", "build", "--out", str(world), "--images", "200", "--seed", "0"]) == 0
    assert main(["generate", "p1", "--captions", str(world / "captions_train.json"),
                 "--instances", str(world / "instances_train.json"), "--out", str(p1)]) == 0
    capsys.readouterr()
    res = finetune(tiny_clip_bundle(seed=0, image_size=64), p1,
                   TrainConfig(epochs=4, batch_size=64, lr=1e-3, cache_dir=str(tmp_path / "cache"),
                               mine_negative_images=True, hard_negatives="affirmed"),
                   tmp_path / "run", image_root=world / "images", verbose=False)
    assert res.n_train > 300 and res.n_val > 50 and not res.skipped
    # held-out images (split by image): the text tower learned something that transfers
    assert res.best_val_loss < res.initial_val_loss - 0.1
