"""Tokenization throughput (MB/s of UTF-8 text) of the token-cache build, for `bpe` and `gpt2`.

Data: WikiText-2 validation + test text (`--data`, default `../shared/data/wikitext-2/{valid,test}.txt`,
2.4 MB). Each timing is a complete cache build of both splits (scan for articles, tokenize in
`--num-proc` processes, write the memmap + meta.json) into a fresh directory; the best of `--repeat`
runs is reported. `bpe` is trained on the validation text first (training time reported separately);
`gpt2` is loaded offline from `--gpt2-dir` (`vocab.json` + `merges.txt`) and skipped if absent.

    python benchmarks/text_tokenize.py [--num-proc 1 2] [--repeat 3]
"""
from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from akira.data.text.cache import token_cache
from akira.data.text.sources import iter_documents
from akira.data.text.tokenizer import load_gpt2, train_bpe

ROOT = Path(__file__).resolve().parents[1]


def build_seconds(tokenizer, files: list[Path], num_proc: int, repeat: int) -> tuple[float, int]:
    best, n_tokens = float("inf"), 0
    for _ in range(repeat):
        d = Path(tempfile.mkdtemp(prefix="akira-bench-"))
        try:
            t0 = time.perf_counter()
            n_tokens = sum(token_cache(f, f.stem, tokenizer, d, num_proc=num_proc).n_tokens for f in files)
            best = min(best, time.perf_counter() - t0)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return best, n_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "wikitext-2")
    ap.add_argument("--gpt2-dir", type=Path, default=ROOT.parent / "shared" / "data" / "gpt2")
    ap.add_argument("--bpe-vocab", type=int, default=8192)
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = [args.data / "valid.txt", args.data / "test.txt"]
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"# text_tokenize: {mb:.2f} MB ({', '.join(f.name for f in files)}); {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, CPU cores visible: {len(__import__('os').sched_getaffinity(0))}")

    tokenizers = {}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        tokenizers["bpe"] = train_bpe(iter_documents(files[0]), args.bpe_vocab, Path(d) / "bpe.json")
        print(f"bpe training (vocab {args.bpe_vocab}, on {files[0].name}): {time.perf_counter() - t0:.2f} s")
        if (args.gpt2_dir / "vocab.json").exists():
            tokenizers["gpt2"] = load_gpt2(args.gpt2_dir)
        else:
            print(f"gpt2: skipped (no vocab.json/merges.txt in {args.gpt2_dir})")
        print("| tokenizer | vocab | num_proc | tokens | seconds | MB/s |")
        print("|---|---|---|---|---|---|")
        for name, tok in tokenizers.items():
            for p in args.num_proc:
                sec, n = build_seconds(tok, files, p, args.repeat)
                print(f"| {name} | {tok.n_vocab} | {p} | {n} | {sec:.3f} | {mb / sec:.2f} |")


if __name__ == "__main__":
    main()
