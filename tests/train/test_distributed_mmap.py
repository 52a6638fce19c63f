"""Two processes (gloo, CPU) reading image embeddings through the memory-mapped store give, bit
for bit, the weights two processes get from in-memory embeddings; the store is built by both
ranks in parallel (each encodes its share of the images into its own shards)."""

import os
import re

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from .conftest import make_dataset
from .test_distributed import _config, _free_port, _tiny


def _worker(rank: int, world: int, port: int, tmp: str, recs: list, mode: str) -> None:
    from negationclip.models import ImageEmbeddingCache
    from negationclip.train import finetune

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), NEGATIONCLIP_NO_PROGRESS="1")
    torch.set_num_threads(1)
    cache = (ImageEmbeddingCache(False) if mode == "memory"
             else ImageEmbeddingCache(os.path.join(tmp, "cache"), shard_size=3))
    finetune(_tiny(), recs, _config(tmp), os.path.join(tmp, mode), cache=cache,
             image_root=os.path.join(tmp, "data", "images"), verbose=False)


@pytest.mark.timeout(400)
def test_two_gloo_processes_over_memory_mapped_embeddings_equal_in_memory_bit_for_bit(tmp_path):
    recs = make_dataset(tmp_path / "data", n=10)
    for mode in ("memory", "mmap"):
        mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), recs, mode), nprocs=2, join=True)
    a = load_file(str(tmp_path / "memory" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "mmap" / "state" / "trainable.safetensors"))
    assert a.keys() == b.keys() and "logit_scale" in a
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = dict(_tiny().model.named_parameters())
    assert not torch.equal(a["text_projection.weight"], start["text_projection.weight"])
    # both ranks encoded a share of the 10 images into shards of their own (parallel build)
    shards = [p.name for p in (tmp_path / "cache").rglob("shards/*.npy") if not p.name.endswith(".keys.npy")]
    ranks = {re.match(r"r(\d{5})-", n).group(1) for n in shards}
    assert ranks == {"00000", "00001"}
    from negationclip.models.embedding_store import EmbeddingStore
    store = EmbeddingStore(next(p for p in (tmp_path / "cache").iterdir() if (p / "shards").is_dir()))
    assert len(store) == 10  # one row per image, indexed once
