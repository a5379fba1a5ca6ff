"""FieldsDataModule: clip shapes, determinism, sharding, resume, protocols, online mode, bad input."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from akira.data.fields.datamodule import FieldsDataModule
from akira.data.fields.params import PARAMS
from akira.data.fields.patterns import generate

SMALL = dict(grid=8, history=2, horizon=3, batch_size=4, val_streams=6, test_streams=5, reference_clips=7)


def _in_ranges(v: torch.Tensor, ranges) -> torch.Tensor:
    inside = torch.zeros_like(v, dtype=torch.bool)
    for lo, hi in ranges:
        inside |= (v >= lo) & (v <= hi)
    return inside


def _take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_train_batches_shape_and_content():
    dm = FieldsDataModule(pattern="counter_rotate", **SMALL)
    batch = _take(dm.train_dataloader(), 1)[0]
    assert batch.shape == (4, 5, 8, 8) and batch.dtype == torch.float32
    # the batch is exactly the frames of its samples' times and parameters
    ds = dm.train_dataset()
    times, params = ds.meta(ds.batch_indices(0))
    assert times.shape == (4, 5) and torch.equal(
        times[:, 1:] - times[:, :-1], torch.ones(4, 4, dtype=torch.long)
    )
    for i in range(4):
        want = generate("counter_rotate", times[i], 8, {k: float(v[i]) for k, v in params.items()})
        assert torch.allclose(batch[i], want, atol=1e-6)
    # parameters vary per stream and come from the train ranges
    for key, v in params.items():
        assert bool(_in_ranges(v, PARAMS["counter_rotate"][key].train).all()), key
    assert params["radius"].unique().numel() == 4


def test_vary_params_false_uses_defaults():
    dm = FieldsDataModule(vary_params=False, **SMALL)
    ds = dm.train_dataset()
    times, params = ds.meta(ds.batch_indices(0))
    assert params == {}
    assert torch.equal(ds.clips(ds.batch_indices(0))[2], generate("blob", times[2], 8))


def test_train_stream_is_deterministic_per_seed_and_independent_of_batch_size():
    a = _take(FieldsDataModule(seed=3, **SMALL).train_dataloader(), 3)
    b = _take(FieldsDataModule(seed=3, **SMALL).train_dataloader(), 3)
    c = _take(FieldsDataModule(seed=4, **SMALL).train_dataloader(), 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # sample i is a function of (seed, i) only: batch size 8 batch 0 == batch size 4 batches 0 and 1
    big = _take(FieldsDataModule(seed=3, **{**SMALL, "batch_size": 8}).train_dataloader(), 1)[0]
    assert torch.equal(big, torch.cat(a[:2]))


def test_train_frames_stay_below_train_t_max():
    dm = FieldsDataModule(**{**SMALL, "train_t_max": 40})
    ds = dm.train_dataset()
    times, _ = ds.meta(torch.arange(5000))
    assert int(times.min()) == 0 and int(times.max()) == 39  # whole range [0, 40) used, never beyond
    times, _ = FieldsDataModule(**SMALL).train_dataset().meta(torch.arange(5000))
    assert int(times.max()) < 10000 and int(times.min()) >= 0


def test_sharding_over_ranks_and_workers_is_disjoint():
    dm = FieldsDataModule(**SMALL)
    r0, r1 = dm.train_dataset(rank=0, world_size=2), dm.train_dataset(rank=1, world_size=2)
    i0 = torch.cat([r0.batch_indices(k) for k in range(6)])
    i1 = torch.cat([r1.batch_indices(k) for k in range(6)])
    assert not set(i0.tolist()) & set(i1.tolist())
    assert sorted(i0.tolist() + i1.tolist()) == list(range(48))
    # two DataLoader workers: disjoint batches, same order as a single process
    single = _take(FieldsDataModule(**SMALL).train_dataloader(), 4)
    multi = _take(FieldsDataModule(**{**SMALL, "num_workers": 2}).train_dataloader(), 4)
    assert all(torch.equal(x, y) for x, y in zip(single, multi))
    assert not torch.equal(multi[0], multi[1])


def test_resume_from_state_dict_without_trainer():
    ref = _take(FieldsDataModule(**SMALL).train_dataloader(), 5)
    dm = FieldsDataModule(**SMALL)
    it = iter(dm.train_dataloader())
    for _ in range(3):
        next(it)
    state = dm.state_dict()
    assert state == {"samples_seen": 12}
    dm2 = FieldsDataModule(**SMALL)
    dm2.load_state_dict(state)
    resumed = _take(dm2.train_dataloader(), 2)
    assert torch.equal(resumed[0], ref[3]) and torch.equal(resumed[1], ref[4])


def test_state_dict_with_trainer_counts_global_samples():
    dm = FieldsDataModule(**SMALL)
    dm.trainer = SimpleNamespace(global_step=3, accumulate_grad_batches=1, world_size=2, global_rank=1)
    assert dm.state_dict() == {"samples_seen": 3 * 4 * 2}
    rank1 = dm.train_dataset()
    fresh = FieldsDataModule(**SMALL)
    fresh.load_state_dict(dm.state_dict())
    resumed = fresh.train_dataset(rank=1, world_size=2)
    assert torch.equal(resumed.batch_indices(0), rank1.batch_indices(3))
    with pytest.raises(ValueError, match="samples_seen"):
        fresh.load_state_dict({})


class _Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.detach().clone())
        return ((batch.mean() - self.w) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(steps, tmp_path, ckpt=None):
    model = _Recorder()
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    dm = FieldsDataModule(**SMALL)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return trainer, model


def test_lightning_resume_continues_at_the_same_sample(tmp_path):
    _, full = _fit(5, tmp_path)
    trainer, first = _fit(3, tmp_path)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    assert torch.load(tmp_path / "mid.ckpt", weights_only=False)["FieldsDataModule"] == {"samples_seen": 12}
    _, second = _fit(5, tmp_path, ckpt=str(tmp_path / "mid.ckpt"))
    assert len(full.seen) == 5 and len(second.seen) == 2
    for got, want in zip(first.seen + second.seen, full.seen):
        assert torch.equal(got, want)


def test_validation_set_is_heldout_and_deterministic():
    dm = FieldsDataModule(pattern="concentric", **SMALL)
    val = dm.eval_sets()["val"]
    assert len(val) == 6 and val.times.shape == (6, 5)
    assert bool((val.times[:, 0] >= 10000).all()) and bool((val.times[:, 0] < 15000).all())
    for key, v in val.params.items():
        assert bool(_in_ranges(v, PARAMS["concentric"][key].heldout).all()), key
    assert set(val.params) == set(PARAMS["concentric"])
    batches = list(dm.val_dataloader())
    assert [b.shape for b in batches] == [(4, 5, 8, 8), (2, 5, 8, 8)]
    again = list(FieldsDataModule(pattern="concentric", **SMALL).val_dataloader())
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    assert torch.equal(val[1], batches[0][1])


def test_test_protocols_unseen_and_reference():
    dm = FieldsDataModule(**{**SMALL, "eval_batch_size": 3})
    assert dm.test_protocols == ("unseen", "reference")
    loaders = dm.test_dataloader()
    assert isinstance(loaders, list) and len(loaders) == 2
    unseen, reference = dm.eval_sets()["unseen"], dm.eval_sets()["reference"]
    assert loaders[0].dataset is unseen and loaders[1].dataset is reference
    assert len(unseen) == 5 and bool((unseen.times >= 10000).all())
    for key, v in unseen.params.items():
        assert bool(_in_ranges(v, PARAMS["blob"][key].heldout).all())
    assert not torch.equal(unseen.params["radius"][:5], dm.eval_sets()["val"].params["radius"][:5])
    # the seed's protocol: defaults, consecutive clips from t = 10000
    assert reference.params == {}
    assert torch.equal(reference.times[:, 0], torch.arange(10000, 10007))
    first = next(iter(loaders[1]))
    assert first.shape == (3, 5, 8, 8)
    assert torch.equal(first[0], generate("blob", torch.arange(10000, 10005), 8))
    assert torch.equal(first[2], generate("blob", torch.arange(10002, 10007), 8))


def test_online_mode_is_one_sequential_stream():
    dm = FieldsDataModule(mode="online", pattern="switching", switch_period=101, train_t_max=30, **SMALL)
    batches = list(dm.train_dataloader())
    assert len(batches) == 30 - 5 + 1
    assert all(b.shape == (1, 5, 8, 8) for b in batches)
    for k in (0, 1, 2, 25):
        want = generate("switching", torch.arange(k, k + 5), 8, {"switch_period": 101})
        assert torch.equal(batches[k][0], want)
    dm.load_state_dict({"samples_seen": 7})
    assert torch.equal(next(iter(dm.train_dataloader())), batches[7])


def test_bad_input_names_the_key():
    cases = [
        ({"pattern": "blobb"}, r"data\.pattern.*concentric"),
        ({"grid": 4}, r"data\.grid.*>= 8"),
        ({"history": 0}, r"data\.history.*>= 1"),
        ({"horizon": 0}, r"data\.horizon.*>= 1"),
        ({"batch_size": 0}, r"data\.batch_size.*>= 1"),
        ({"mode": "stream"}, r"data\.mode.*batch, online"),
        ({"train_t_max": 10, "reference_t0": 10}, r"data\.history.*<= data\.train_t_max"),
        ({"reference_t0": 500}, r"data\.reference_t0"),
        ({"grid": 32.0}, r"data\.grid"),
        ({"num_workers": -1}, r"data\.num_workers"),
        ({"eval_batch_size": 0}, r"data\.eval_batch_size"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            FieldsDataModule(**kwargs)


def test_one_generate_call_per_batch(monkeypatch):
    import akira.data.fields.datasets as datasets

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return generate(*args, **kwargs)

    monkeypatch.setattr(datasets, "generate", counting)
    dm = FieldsDataModule(**SMALL)
    _take(dm.train_dataloader(), 3)
    list(dm.val_dataloader())
    assert calls == [(4, 5)] * 3 + [(4, 5), (2, 5)]


def test_batch_generation_is_fast():
    # 32 clips x 18 frames at 32x32 (a per-frame loop would take ~100x longer); min of 5 is robust to load
    # one intra-op thread, as in a DataLoader worker (several threads on a loaded 2-core box only wait)
    ds = FieldsDataModule().train_dataset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds.clips(ds.batch_indices(0))
        times = []
        for k in range(5):
            t0 = time.perf_counter()
            ds.clips(ds.batch_indices(k))
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.05


def test_plain_dataloader_on_eval_set():
    ds = FieldsDataModule(**SMALL).eval_sets()["val"]
    loader = DataLoader(ds, batch_size=None)
    assert next(iter(loader)).shape == (5, 8, 8)


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_ranks_evaluate_disjoint_contiguous_shards_covering_every_clip(monkeypatch, world):
    dm = FieldsDataModule(**{**SMALL, "val_streams": 7, "test_streams": 7})
    dm.setup("fit")
    full = {name: torch.cat(list(loader)) for name, loader in
            (("val", dm.val_dataloader()), *zip(dm.test_protocols, dm.test_dataloader()))}
    shards = {name: [] for name in full}
    for rank in range(world):
        monkeypatch.setattr(dm, "_rank_world", lambda r=rank: (r, world))
        shards["val"].append(torch.cat(list(dm.val_dataloader())))
        for name, loader in zip(dm.test_protocols, dm.test_dataloader()):
            shards[name].append(torch.cat(list(loader)))
    for name, parts in shards.items():
        assert sum(len(p) for p in parts) == len(full[name])  # every clip exactly once, no padding
        torch.testing.assert_close(torch.cat(parts), full[name], rtol=0, atol=0)  # rank order = set order
