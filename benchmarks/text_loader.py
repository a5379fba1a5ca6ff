"""Training-loader throughput (tokens/s) for batch 64 x 512 from a token memmap; must exceed 5M tokens/s.

Two token streams: (a) a WikiText-103-sized synthetic memmap (120M uint16 tokens, 240 MB, written to a
temp dir so it is in the page cache, as a cache reused across runs would be), and (b) the real GPT-2
cache of WikiText-2 valid+test when `--gpt2-dir`/`--data` exist. For each sampling mode the script
times `--batches` batches through `torch.utils.data.DataLoader` (the loader `TextDataModule` builds)
with `num_workers` 0 and 2, after `--warmup` batches. Tokens/s counts input tokens (64 * 512 per batch).

    python benchmarks/text_loader.py [--batches 300]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from akira.data.text.windows import TrainWindows

ROOT = Path(__file__).resolve().parents[1]
B, T = 64, 512


def tokens_per_s(tokens, sampling: str, workers: int, batches: int, warmup: int) -> float:
    loader = DataLoader(TrainWindows(tokens, T, B, sampling, seed=0), batch_size=None, num_workers=workers,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
    dt = time.perf_counter() - t0
    assert x.shape == (B, T) and x.dtype == torch.int64
    del it
    return batches * B * T / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--n-tokens", type=int, default=120_000_000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "wikitext-2")
    ap.add_argument("--gpt2-dir", type=Path, default=ROOT.parent / "shared" / "data" / "gpt2")
    args = ap.parse_args()
    print(f"# text_loader: batch {B} x {T}; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"CPU cores visible: {len(os.sched_getaffinity(0))}")
    tmp = Path(tempfile.mkdtemp(prefix="akira-loader-"))
    try:
        path = tmp / "synthetic.bin"
        mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=(args.n_tokens,))
        rng = np.random.default_rng(0)
        for i in range(0, args.n_tokens, 1 << 24):
            mm[i:i + (1 << 24)] = rng.integers(0, 50257, size=min(1 << 24, args.n_tokens - i), dtype=np.uint16)
        mm.flush()
        del mm
        streams = {f"synthetic {args.n_tokens / 1e6:.0f}M": np.memmap(path, dtype=np.uint16, mode="r", shape=(args.n_tokens,))}
        if (args.gpt2_dir / "vocab.json").exists() and (args.data / "valid.txt").exists():
            from akira.data.text.datamodule import TextDataModule

            dm = TextDataModule(source="text", train_path=str(args.data / "valid.txt"), data_dir=str(tmp / "d"),
                                tokenizer="gpt2", tokenizer_dir=str(args.gpt2_dir), seq_len=T, batch_size=B)
            streams[f"wikitext-2 valid gpt2 {dm.tokens('train') / 1e6:.2f}M"] = dm.cache("train").tokens
        print("| tokens | sampling | num_workers | Mtokens/s |")
        print("|---|---|---|---|")
        for name, toks in streams.items():
            for sampling in ("random", "chunks"):
                for workers in (0, 2):
                    r = tokens_per_s(toks, sampling, workers, args.batches, args.warmup)
                    print(f"| {name} | {sampling} | {workers} | {r / 1e6:.1f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
