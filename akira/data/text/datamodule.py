"""`TextDataModule`: corpus files -> tokenizer -> token cache (memmap) -> training/eval windows.

Training batches are `(x, y)` int64 `(batch_size, seq_len)`; validation/test batches are
`(x, y, mask)` with `mask` bool `(b, seq_len)` marking the targets to score (each token of the split
exactly once; see `windows.py`). For the task: `vocab_size`, `eot_id`, `words(split)` (WikiText word
count for word-level perplexity), `tokens(split)` (cache length), `scored_tokens(split)` (= tokens - 1,
what a full evaluation scores), `documents(split)`.

Resuming: the module counts the training batches the trainer consumed (`on_before_batch_transfer`
while `trainer.training`); Lightning saves `state_dict()` in checkpoints and calls `load_state_dict()`
on resume, and the next `train_dataloader()` continues at that step. A LightningModule used with this
datamodule should not also override `on_before_batch_transfer` (Lightning would call only this one).

Where files go: WikiText downloads in `<data_dir>/<source>/wiki.<split>.<variant>`; caches in
`<cache_dir or data_dir/<source>/cache>/<variant | text>-<source file's path hash>/<tokenizer>-<hash>/<split>.meta.json` (+ the `.bin` it names);
a trained BPE in `<cache root>/tokenizers/bpe-v<vocab>-f<min_freq>-<train sha[:12]>.json` beside them.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from filelock import FileLock
from torch.utils.data import DataLoader

from .cache import TOKEN_DTYPES, TokenCache, choose_dtype, token_cache
from .fileio import file_sha256
from .hub import download_wikitext, have_files
from .metrics import unigram_log_probs
from .sources import (
    SOURCES,
    SPLITS,
    VARIANTS,
    WIKITEXT,
    CorpusFiles,
    iter_documents,
    local_wikitext,
    normalize_split,
    text_files,
)
from .tokenizer import TOKENIZERS, BPETokenizer, ByteTokenizer, check_bpe_vocab_size, load_gpt2, train_bpe
from .windows import SAMPLING, EvalWindows, TrainWindows

DEFAULT_BPE_VOCAB = 32768


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r}: expected one of {', '.join(map(str, allowed))}")


def _int(key: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}={value!r}: expected an integer >= {minimum}" + (" or null" if allow_none else ""))


class TextDataModule(pl.LightningDataModule):
    """Token-stream language-modelling data (WikiText-103/-2 from the hub or local files, or plain text).

    source: "wikitext-103" | "wikitext-2" | "text"; variant: "tokens" | "raw" (WikiText only);
    local_dir: WikiText directory with `wiki.{train,valid,test}.{variant}` (skips the download);
    train_path/valid_path/test_path: plain-text files for source="text";
    tokenizer: "gpt2" | "bpe" | "byte"; tokenizer_dir: GPT-2 `vocab.json`+`merges.txt` directory;
    vocab_size: BPE vocabulary (bpe only; default 32768); sampling: "random" | "chunks";
    eval_stride: sliding-window stride for val/test (None = seq_len, non-overlapping);
    num_proc: tokenizing processes (None = available cores); token_dtype: "auto" | "uint16" | "uint32";
    download: allow network downloads (hub data, tiktoken files).
    """

    def __init__(
        self,
        source: str = "wikitext-103",
        variant: str = "tokens",
        local_dir: str | None = None,
        train_path: str | None = None,
        valid_path: str | None = None,
        test_path: str | None = None,
        data_dir: str = "data",
        cache_dir: str | None = None,
        tokenizer: str = "gpt2",
        tokenizer_dir: str | None = None,
        vocab_size: int | None = None,
        bpe_min_frequency: int = 2,
        seq_len: int = 512,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        sampling: str = "random",
        eval_stride: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        num_proc: int | None = None,
        token_dtype: str = "auto",
        download: bool = True,
        lock_timeout: float | None = None,
    ):
        super().__init__()
        _choice("data.source", source, SOURCES)
        if source in WIKITEXT:
            _choice("data.variant", variant, VARIANTS)
        _choice("data.tokenizer", tokenizer, TOKENIZERS)
        _choice("data.sampling", sampling, SAMPLING)
        _choice("data.token_dtype", token_dtype, TOKEN_DTYPES)
        for key, value, lo in (("data.seq_len", seq_len, 1), ("data.batch_size", batch_size, 1),
                               ("data.bpe_min_frequency", bpe_min_frequency, 1), ("data.num_workers", num_workers, 0),
                               ("seed", seed, 0)):
            _int(key, value, lo)
        _int("data.eval_batch_size", eval_batch_size, 1, allow_none=True)
        _int("data.num_proc", num_proc, 1, allow_none=True)
        if eval_stride is not None and (not isinstance(eval_stride, int) or not 1 <= eval_stride <= seq_len):
            raise ValueError(f"data.eval_stride={eval_stride!r}: expected an integer in [1, seq_len={seq_len}] or null")
        if tokenizer == "bpe":
            vocab_size = check_bpe_vocab_size(DEFAULT_BPE_VOCAB if vocab_size is None else vocab_size)
            choose_dtype(vocab_size, token_dtype)
        if source == "text":
            text_files(train_path, valid_path, test_path)  # at least one path
        self.source, self.variant = source, (variant if source in WIKITEXT else "text")
        self.local_dir, self.paths = local_dir, {"train": train_path, "valid": valid_path, "test": test_path}
        self.data_dir, self.cache_dir = Path(data_dir), cache_dir
        self.tokenizer_name, self.tokenizer_dir = tokenizer, tokenizer_dir
        self.bpe_vocab_size, self.bpe_min_frequency = vocab_size, bpe_min_frequency
        self.seq_len, self.batch_size = seq_len, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.sampling, self.eval_stride, self.seed = sampling, eval_stride, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.num_proc = num_proc or cores
        self.token_dtype, self.download, self.lock_timeout = token_dtype, download, lock_timeout
        self._corpus: CorpusFiles | None = None
        self._tokenizer = None
        self._caches: dict[str, TokenCache] = {}
        self._unigram: torch.Tensor | None = None
        self._train_step = 0

    # ------------------------------------------------------------------ files, tokenizer, caches
    @property
    def corpus(self) -> CorpusFiles:
        """The split files (downloads WikiText on first use when no local copy exists)."""
        if self._corpus is None:
            if self.source == "text":
                self._corpus = text_files(self.paths["train"], self.paths["valid"], self.paths["test"])
            elif self.local_dir is not None:
                self._corpus = local_wikitext(self.local_dir, self.variant, self.source)
            else:
                dest = self.data_dir / self.source
                if not have_files(dest, self.variant):
                    dest.mkdir(parents=True, exist_ok=True)
                    with FileLock(str(dest / ".download.lock")):
                        download_wikitext(self.source, self.variant, dest, allow_download=self.download)
                self._corpus = local_wikitext(dest, self.variant, self.source)
        return self._corpus

    @property
    def cache_root(self) -> Path:
        """`cache_dir`, or `<data_dir>/<source>/cache` (`<data_dir>/text_local/cache` for source=text)."""
        if self.cache_dir:
            return Path(self.cache_dir)
        return self.data_dir / ("text_local" if self.source == "text" else self.source) / "cache"

    def split_cache_dir(self, split: str) -> Path:
        """Directory whose `<tokenizer>-<hash>/<split>.meta.json` describes `split`: one per source file (its resolved path
        hashed), so that corpora sharing a `data.cache_dir` (WikiText-2 and -103, two copies of one variant, local
        text files) never build into, or read, each other's cache."""
        key = hashlib.sha1(str(self.corpus.path(split).resolve()).encode()).hexdigest()[:10]
        return self.cache_root / (f"text-{key}" if self.source == "text" else f"{self.variant}-{key}")

    @property
    def tokenizer(self):
        """The tokenizer object (`name`, `n_vocab`, `eot_id`, `hash`, `encode_batch`, `decode`)."""
        if self._tokenizer is None:
            if self.tokenizer_name == "byte":
                self._tokenizer = ByteTokenizer()
            elif self.tokenizer_name == "gpt2":
                self._tokenizer = load_gpt2(self.tokenizer_dir, allow_download=self.download)
            else:
                self._tokenizer = self._bpe()
        return self._tokenizer

    def _bpe(self) -> BPETokenizer:
        if not self.corpus.has("train"):
            raise ValueError("data.tokenizer=bpe trains on the training split: set data.train_path")
        train = self.corpus.path("train")
        name = f"bpe-v{self.bpe_vocab_size}-f{self.bpe_min_frequency}-{file_sha256(train)[:12]}.json"
        path = self.cache_root / "tokenizers" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=-1 if self.lock_timeout is None else self.lock_timeout):
            if path.exists():
                try:
                    return BPETokenizer(path)
                except Exception:  # noqa: BLE001 - a corrupt tokenizer file is retrained below
                    pass
            return train_bpe(iter_documents(train), self.bpe_vocab_size, path, self.bpe_min_frequency)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the model's embedding rows; pad it to a multiple of 64 there if wanted)."""
        return int(self.tokenizer.n_vocab)

    @property
    def eot_id(self) -> int:
        return int(self.tokenizer.eot_id)

    def cache(self, split: str) -> TokenCache:
        """The token cache of `split` ("train", "valid"/"val", "test"), built on first use."""
        split = normalize_split(split)
        if split not in self._caches:
            self._caches[split] = token_cache(
                self.corpus.path(split), split, self.tokenizer, self.split_cache_dir(split), num_proc=self.num_proc,
                token_dtype=self.token_dtype, lock_timeout=self.lock_timeout,
            )
        return self._caches[split]

    def tokens(self, split: str) -> int:
        return self.cache(split).n_tokens

    def scored_tokens(self, split: str) -> int:
        """Targets scored by a full evaluation of `split` (every token but the first)."""
        return self.cache(split).n_tokens - 1

    def words(self, split: str) -> int:
        return self.cache(split).n_words

    def documents(self, split: str) -> int:
        return self.cache(split).n_documents

    def unigram_log_probs(self) -> torch.Tensor | None:
        """The unigram baseline `(vocab_size,)` float64 log-probs from the training split (None without one)."""
        if self._unigram is None and self.corpus.has("train"):
            self._unigram = unigram_log_probs(self.cache("train").tokens, self.vocab_size)
        return self._unigram

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Download (WikiText) and tokenize every split that has a file (rank 0 of each node)."""
        for split in SPLITS:
            if self.corpus.has(split):
                self.cache(split)

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "valid"), "validate": ("valid",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, tuple(s for s in SPLITS if self.corpus.has(s))):
            self.cache(split)

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return int(self.trainer.global_rank), int(self.trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _loader(self, dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                          pin_memory=bool(self.pin_memory and torch.cuda.is_available()),
                          persistent_workers=self.num_workers > 0)

    def train_dataset(self) -> TrainWindows:
        rank, world = self._rank_world()
        return TrainWindows(self.cache("train"), self.seq_len, self.batch_size, self.sampling, self.seed,
                            rank, world, start_step=self._train_step)

    def eval_dataset(self, split: str) -> EvalWindows:
        rank, world = self._rank_world()
        return EvalWindows(self.cache(split), self.seq_len, self.eval_batch_size, self.eval_stride, rank, world)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset("valid"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset("test"))

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training and not self.trainer.sanity_checking:
            self._train_step += 1
        return batch

    def state_dict(self) -> dict:
        return {"train_step": self._train_step, "seed": self.seed, "sampling": self.sampling,
                "seq_len": self.seq_len, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume at the saved batch index. The batch order is a function of (seed, sampling, seq_len,
        batch_size), so a resume with other values would silently see other data than the interrupted run
        would have: refused, naming the key."""
        _int("state_dict['train_step']", state_dict["train_step"], 0)
        for key, value in self.state_dict().items():
            if key != "train_step" and key in state_dict and state_dict[key] != value:
                raise ValueError(f"data.{key}={value!r}: the checkpoint being resumed was trained with "
                                 f"{state_dict[key]!r}, and its batch order depends on it; resume with the same value "
                                 f"(or start a new run)")
        self._train_step = int(state_dict["train_step"])

    @property
    def train_step(self) -> int:
        """Global index of the next training batch (batches consumed so far, including resumed ones)."""
        return self._train_step
