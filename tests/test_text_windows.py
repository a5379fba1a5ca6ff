"""Training/eval windows: bounds, coverage, determinism, DDP sharding, resume, memmap memory use."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from akira.data.text.datamodule import TextDataModule
from akira.data.text.fixture import wikitext_like
from akira.data.text.windows import EvalWindows, TrainWindows, eval_windows

N = 5003
TOKENS = np.random.default_rng(0).integers(0, 1000, size=N).astype(np.uint16)


def check_xy(tokens, offsets, x, y, seq_len):
    for o, xi, yi in zip(offsets.tolist(), x, y):
        np.testing.assert_array_equal(xi.numpy(), tokens[o:o + seq_len])
        np.testing.assert_array_equal(yi.numpy(), tokens[o + 1:o + seq_len + 1])


@pytest.mark.parametrize("sampling", ["random", "chunks"])
def test_train_windows_within_bounds_and_shifted(sampling):
    ds = TrainWindows(TOKENS, seq_len=32, batch_size=8, sampling=sampling, seed=1)
    for step in range(0, 400, 7):
        off = ds.offsets(step)
        assert off.shape == (8,) and off.min() >= 0 and off.max() + 33 <= N  # never past the end
    x, y = ds.batch(5)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (8, 32)
    check_xy(TOKENS, ds.offsets(5), x, y, 32)
    starts = np.concatenate([ds.offsets(s) for s in range(2000)])
    if sampling == "random":  # offsets reach both ends of the valid range
        assert starts.min() < 20 and starts.max() > N - 33 - 20


def test_chunks_epoch_covers_split_once():
    T, B = 32, 4
    ds = TrainWindows(TOKENS, seq_len=T, batch_size=B, sampling="chunks", seed=3)
    assert ds.n_chunks == (N - 1) // T and ds.steps_per_epoch == ds.n_chunks // B
    for epoch in range(3):
        starts = np.concatenate([ds.offsets(epoch * ds.steps_per_epoch + k) for k in range(ds.steps_per_epoch)])
        assert len(np.unique(starts)) == len(starts) == ds.steps_per_epoch * B
        phase = starts.min() % T
        assert np.all((starts - phase) % T == 0)  # non-overlapping, aligned on the epoch's phase
        covered = np.zeros(N, bool)
        for s in starts:
            assert not covered[s + 1:s + T + 1].any()  # every target at most once per epoch
            covered[s + 1:s + T + 1] = True
        assert covered.sum() >= N - 1 - (ds.n_chunks % B + 1) * T  # all but the leftover chunks + phase
    assert not np.array_equal(ds.offsets(0), ds.offsets(ds.steps_per_epoch))  # reshuffled each epoch


@pytest.mark.parametrize("sampling", ["random", "chunks"])
def test_determinism_for_a_seed(sampling):
    a = TrainWindows(TOKENS, 16, 4, sampling, seed=7)
    b = TrainWindows(TOKENS, 16, 4, sampling, seed=7)
    c = TrainWindows(TOKENS, 16, 4, sampling, seed=8)
    for step in (0, 1, 250, 10_000):
        assert torch.equal(a.batch(step)[0], b.batch(step)[0])
    assert not torch.equal(a.batch(0)[0], c.batch(0)[0])
    # the DataLoader with 2 workers yields exactly the serial sequence of steps
    serial = [a.batch(s)[0] for s in range(6)]
    loader = DataLoader(TrainWindows(TOKENS, 16, 4, sampling, seed=7), batch_size=None, num_workers=2)
    for want, (got, _) in zip(serial, loader):
        assert torch.equal(want, got)


@pytest.mark.parametrize("sampling", ["random", "chunks"])
def test_ddp_sharding_two_ranks_disjoint_and_complete(sampling):
    single = TrainWindows(TOKENS, 16, 8, sampling, seed=2, world_size=1)
    r0 = TrainWindows(TOKENS, 16, 4, sampling, seed=2, rank=0, world_size=2)
    r1 = TrainWindows(TOKENS, 16, 4, sampling, seed=2, rank=1, world_size=2)
    seen = []
    for step in range(r0.steps_per_epoch if sampling == "chunks" else 50):
        g = r0.global_offsets(step)
        np.testing.assert_array_equal(np.r_[r0.offsets(step), r1.offsets(step)], g)  # complete
        np.testing.assert_array_equal(g, single.offsets(step))  # W ranks x B == one process x W*B
        seen.append((r0.offsets(step), r1.offsets(step)))
    if sampling == "chunks":  # over an epoch the two ranks' chunks are disjoint
        s0 = np.concatenate([a for a, _ in seen])
        s1 = np.concatenate([b for _, b in seen])
        assert not set(s0.tolist()) & set(s1.tolist())
        assert len(set(s0.tolist()) | set(s1.tolist())) == r0.steps_per_epoch * 8
    with pytest.raises(ValueError, match="rank=2"):
        TrainWindows(TOKENS, 16, 4, sampling, rank=2, world_size=2)


def test_resume_from_state_dict():
    ds = TrainWindows(TOKENS, 16, 4, "chunks", seed=5)
    it = iter(ds)
    first = [next(it)[0] for _ in range(5)]
    resumed = TrainWindows(TOKENS, 16, 4, "chunks", seed=5)
    resumed.load_state_dict({"step": 3})
    assert resumed.state_dict()["step"] == 3
    it2 = iter(resumed)
    assert torch.equal(next(it2)[0], first[3]) and torch.equal(next(it2)[0], first[4])


@pytest.mark.parametrize("stride", [None, 24, 10, 1])
def test_eval_windows_score_every_token_exactly_once(stride):
    T = 24
    starts, score_from = eval_windows(N, T, stride)
    counts = np.zeros(N, int)
    for s, f in zip(starts, score_from):
        assert 0 <= s and s + T + 1 <= N and 0 <= f < T
        counts[s + 1 + f:s + 1 + T] += 1
        if stride is not None and s != starts[0] and s != starts[-1]:
            assert f == T - stride  # scored targets keep >= T - stride tokens of context
    assert counts[0] == 0 and np.all(counts[1:] == 1)
    ds = EvalWindows(TOKENS, T, batch_size=7, stride=stride)
    n_scored = 0
    for x, y, mask in ds:
        assert x.shape == y.shape == mask.shape and mask.dtype == torch.bool
        n_scored += int(mask.sum())
    assert n_scored == N - 1


@pytest.mark.parametrize("world", [2, 3, 200])
def test_eval_sharding_over_ranks_is_complete_disjoint_and_even(world):
    """Ranks take disjoint batches that together score every target once; every rank gets the same number of
    batches, at least one, padding batches (nothing scored) filling in where the split runs out — with 200 ranks
    there are more ranks than batches (Lightning stops on a rank with an empty DataLoader)."""
    full = EvalWindows(TOKENS, 16, batch_size=5, stride=8)
    parts = [EvalWindows(TOKENS, 16, batch_size=5, stride=8, rank=r, world_size=world) for r in range(world)]
    assert world < 200 or world > full.n_batches
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) >= 1
    real = [i for p in parts for i in p.my_batches if i >= 0]
    assert sorted(real) == list(range(full.n_batches))
    total = sum(int(m.sum()) for p in parts for _, _, m in p)
    assert total == N - 1
    with pytest.raises(ValueError, match="data.seq_len=9000"):
        EvalWindows(TOKENS, 9000, batch_size=5)


def _anon_rss_bytes() -> int:
    """Resident memory not backed by files (statm resident - shared): what Python itself holds."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_rss_does_not_grow_with_corpus(tmp_path):
    def corpus(name, n_articles, seed):
        text = wikitext_like(n_articles, seed=seed, sections=3, paragraphs=6)
        (tmp_path / name).write_text(text, encoding="utf-8")
        return len(text.encode())

    # warm-up: a 4 MB build brings the allocator to its steady state (~1 MiB work buffers per range)
    corpus("warm.txt", 1500, 0)
    TextDataModule(source="text", train_path=str(tmp_path / "warm.txt"), data_dir=str(tmp_path / "d"),
                   tokenizer="byte", num_proc=1).setup()
    corpus_bytes = corpus("big.txt", 3000, 1)  # ~8 MB of text -> ~16 MB memmap
    assert corpus_bytes > 7_000_000
    dm = TextDataModule(source="text", train_path=str(tmp_path / "big.txt"), valid_path=str(tmp_path / "big.txt"),
                        data_dir=str(tmp_path / "d"), tokenizer="byte", seq_len=512, batch_size=16, num_proc=1,
                        sampling="chunks", eval_batch_size=32)
    base = _anon_rss_bytes()
    dm.setup("fit")  # tokenizes the corpus (twice: train and valid caches) into memmaps
    built = _anon_rss_bytes()
    ds = dm.train_dataset()
    for step in range(ds.steps_per_epoch):  # a full epoch touches every page of the memmap
        ds.batch(step)
    for _ in dm.val_dataloader():
        pass
    after = _anon_rss_bytes()
    assert isinstance(dm.cache("train").tokens, np.memmap) and dm.tokens("train") > corpus_bytes
    # holding the text (8 MB str) or the tokens in RAM (16 MB as uint16, 64 MB as int64) would exceed these
    assert built - base < corpus_bytes / 2, (built - base, corpus_bytes)
    assert after - built < corpus_bytes / 4, (after - built, corpus_bytes)
