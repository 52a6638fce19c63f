"""Launcher variables -> torch.distributed ones (SLURM and MPI as open_clip reads them)."""

from negationclip.train.distributed import first_slurm_host, launcher_env, world_info_from_env


def test_torchrun_wins_and_needs_nothing():
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "1"}
    assert world_info_from_env(env) == (1, 3, 8)
    assert launcher_env(env) == {}


def test_slurm_variables_map_to_ranks_and_master():
    env = {"SLURM_PROCID": "11", "SLURM_LOCALID": "3", "SLURM_NTASKS": "16",
           "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}
    assert world_info_from_env(env) == (3, 11, 16)
    out = launcher_env(env)
    assert out == {"RANK": "11", "LOCAL_RANK": "3", "WORLD_SIZE": "16",
                   "MASTER_ADDR": "gpu07", "MASTER_PORT": str(29500 + 4242 % 2000)}
    # an exported master address and port are kept
    env.update(MASTER_ADDR="10.0.0.5", MASTER_PORT="1234")
    assert "MASTER_ADDR" not in launcher_env(env) and "MASTER_PORT" not in launcher_env(env)


def test_mpi_variables():
    env = {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_SIZE": "6", "MASTER_ADDR": "h"}
    assert launcher_env(env)["RANK"] == "5" and launcher_env(env)["WORLD_SIZE"] == "6"


def test_nodelist_forms():
    assert first_slurm_host("node1") == "node1"
    assert first_slurm_host("node1,node2") == "node1"
    assert first_slurm_host("gpu[03-05,09],cpu1") == "gpu03"
    assert first_slurm_host("a-b[010,012]") == "a-b010"
    assert first_slurm_host("x[1-2],y[3-4]") == "x1"


def test_single_process_is_untouched():
    assert launcher_env({}) == {}
    assert world_info_from_env({}) == (0, 0, 1)


def _slurm_worker(rank: int, world: int, port: int, tmp: str, recs: list) -> None:
    import os

    import torch

    from negationclip.train import finetune

    from .test_distributed import _config, _tiny
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
        os.environ.pop(k, None)
    os.environ.update(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NTASKS=str(world),
                      SLURM_JOB_NODELIST="127.0.0.1", MASTER_PORT=str(port),
                      NEGATIONCLIP_NO_PROGRESS="1")
    torch.set_num_threads(1)
    res = finetune(_tiny(), recs, _config(tmp), os.path.join(tmp, "slurm"),
                   image_root=os.path.join(tmp, "data", "images"), verbose=False)
    with open(os.path.join(tmp, f"task{rank}.rank"), "w") as f:
        f.write(str(res.rank))  # the rank the process group gave this task


def test_srun_launch_equals_one_process(tmp_path):
    """Two tasks started as srun starts them (only SLURM_* set) train as one process does."""
    import pytest
    import torch
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from negationclip.train import finetune

    from .conftest import make_dataset
    from .test_distributed import _config, _free_port, _tiny
    pytest.importorskip("torch.distributed")
    recs = make_dataset(tmp_path / "data", n=10)
    finetune(_tiny(), recs, _config(str(tmp_path)), tmp_path / "single",
             image_root=tmp_path / "data" / "images", verbose=False)
    mp.spawn(_slurm_worker, args=(2, _free_port(), str(tmp_path), recs), nprocs=2, join=True)
    a = load_file(str(tmp_path / "single" / "state" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "slurm" / "state" / "trainable.safetensors"))
    assert sorted((tmp_path / f"task{r}.rank").read_text() for r in range(2)) == ["0", "1"]
    for k in a:
        if k.endswith("k_proj.bias"):
            continue  # zero true gradient; Adam amplifies float noise (see test_distributed)
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
