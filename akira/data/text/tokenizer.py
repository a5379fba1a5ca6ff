"""Tokenizers for the token cache: `gpt2` (tiktoken), `bpe` (Hugging Face byte-level BPE), `byte`.

Every tokenizer has `name`, `n_vocab`, `eot_id`, `hash` (sha256 of what defines its mapping, part of the
cache key) and `encode_batch(docs) -> list[np.ndarray]` (one int array per document, no end-of-text:
the cache inserts `eot_id` before each document). Literal `<|endoftext|>` inside text is encoded as
ordinary text, never as the special token.

- `gpt2`: GPT-2's 50,257-token BPE via tiktoken (`<|endoftext|>` = 50256). Offline from a directory with
  `vocab.json` + `merges.txt` (or `encoder.json` + `vocab.bpe`), else tiktoken's cache
  (`TIKTOKEN_CACHE_DIR`, `DATA_GYM_CACHE_DIR`, or `<tmp>/data-gym-cache`), else the network.
- `bpe`: byte-level BPE trained on the training split with `tokenizers` (`<|endoftext|>` = 0), saved as
  JSON beside the token cache and reused; fully offline.
- `byte`: UTF-8 bytes 0..255 plus end-of-text 256 (vocabulary 257), for tiny tests.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes
from .hub import brief_error

TOKENIZERS = ("gpt2", "bpe", "byte")
EOT = "<|endoftext|>"
GPT2_URLS = (
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
)
GPT2_FILE_PAIRS = (("merges.txt", "vocab.json"), ("vocab.bpe", "encoder.json"))
BPE_MIN_VOCAB = 257  # 256 byte symbols + <|endoftext|>
# Cut points where GPT-2's pre-tokenization regex (also the ByteLevel one) has a pre-token boundary and
# the end of the left piece changes no match: after "\n" and before " X" with X not whitespace (the run
# "...\n" then " X" is split there whether or not the text continues). Encoding the pieces separately
# gives exactly the ids of the whole text; HF's pre-tokenizer is ~2x faster on WikiText lines than on
# whole articles. (Blank lines " \n \n" are not cut: there the whitespace merges into one pre-token.)
SAFE_CUT = re.compile(r"(?<=\n)(?= \S)")


def check_tokenizer_name(name: str) -> str:
    if name not in TOKENIZERS:
        raise ValueError(f"data.tokenizer={name!r}: expected one of {', '.join(TOKENIZERS)}")
    return name


class ByteTokenizer:
    """UTF-8 bytes (ids 0..255) + end-of-text (256)."""

    name = "byte"
    n_vocab = 257
    eot_id = 256
    hash = hashlib.sha256(b"akira byte tokenizer v1: utf-8 bytes 0..255, eot 256").hexdigest()

    def encode_batch(self, docs: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(d.encode("utf-8"), dtype=np.uint8) for d in docs]

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


class GPT2Tokenizer:
    """tiktoken's GPT-2 encoding; `source` says where the BPE files came from."""

    name = "gpt2"

    def __init__(self, encoding, source: str):
        self.encoding = encoding
        self.source = source
        self.n_vocab = encoding.n_vocab
        self.eot_id = encoding.eot_token
        h = hashlib.sha256(b"gpt2 pat:" + getattr(encoding, "_pat_str", "").encode())
        for i in range(self.n_vocab):
            h.update(encoding.decode_single_token_bytes(i) + b"\x00")
        self.hash = h.hexdigest()
        self.threads = 1

    def encode_batch(self, docs: list[str]) -> list[np.ndarray]:
        out = self.encoding.encode_ordinary_batch(docs, num_threads=self.threads)
        return [np.asarray(ids, dtype=np.int64) for ids in out]

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])


@contextlib.contextmanager
def _tiktoken_cache_off():
    """tiktoken caches even local files (keyed by path); switch that off while reading ours."""
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def tiktoken_cache_dir() -> str:
    return os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache"
    )


def _gpt2_in_tiktoken_cache() -> bool:
    d = tiktoken_cache_dir()
    return all(os.path.isfile(os.path.join(d, hashlib.sha1(u.encode()).hexdigest())) for u in GPT2_URLS)


def load_gpt2(tokenizer_dir: str | os.PathLike | None = None, allow_download: bool = True) -> GPT2Tokenizer:
    """GPT-2 encoding from `tokenizer_dir`, else tiktoken's cache, else the network (if allowed)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    if tokenizer_dir is not None:
        d = Path(tokenizer_dir).expanduser()
        for merges, vocab in GPT2_FILE_PAIRS:
            if (d / merges).is_file() and (d / vocab).is_file():
                break
        else:
            raise FileNotFoundError(
                f"data.tokenizer_dir={d}: expected GPT-2's vocab.json + merges.txt (or encoder.json + vocab.bpe)"
            )
        try:
            with _tiktoken_cache_off():
                ranks = data_gym_to_mergeable_bpe_ranks(str(d / merges), str(d / vocab))
        except (AssertionError, ValueError, KeyError) as e:
            raise ValueError(
                f"data.tokenizer_dir={d}: {merges} and {vocab} are not a consistent GPT-2 BPE pair ({type(e).__name__})"
            ) from None
        enc = tiktoken.Encoding(
            name="gpt2", pat_str=_gpt2_pat_str(), mergeable_ranks=ranks, special_tokens={EOT: 50256},
            explicit_n_vocab=50257,
        )
        return GPT2Tokenizer(enc, str(d))
    cached = _gpt2_in_tiktoken_cache()
    if cached or allow_download:
        try:
            return GPT2Tokenizer(tiktoken.get_encoding("gpt2"), "tiktoken-cache" if cached else "download")
        except Exception as e:  # noqa: BLE001 - network/cache failures end in the one line below
            why = brief_error(e)
    else:
        why = "downloads are off"
    raise FileNotFoundError(
        f"data.tokenizer=gpt2: GPT-2 BPE files not found ({why}); set data.tokenizer_dir to a directory with "
        f"vocab.json + merges.txt, or put tiktoken's cached vocab.bpe/encoder.json in TIKTOKEN_CACHE_DIR "
        f"(now {tiktoken_cache_dir()}), or allow network access"
    )


def _gpt2_pat_str() -> str:
    from tiktoken_ext import openai_public

    return openai_public.r50k_pat_str


class BPETokenizer:
    """A trained Hugging Face byte-level BPE (`tokenizer.json`)."""

    name = "bpe"

    def __init__(self, path: str | os.PathLike):
        from tokenizers import Tokenizer

        self.path = Path(path)
        data = self.path.read_bytes()
        self.tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        self.tokenizer.encode_special_tokens = True  # literal "<|endoftext|>" in text stays text
        eot = self.tokenizer.token_to_id(EOT)
        if eot is None:
            raise ValueError(f"{self.path}: BPE tokenizer has no {EOT} token (expected one trained by akira)")
        self.eot_id = int(eot)
        self.n_vocab = int(self.tokenizer.get_vocab_size(with_added_tokens=True))
        self.hash = hashlib.sha256(data).hexdigest()

    def encode_batch(self, docs: list[str]) -> list[np.ndarray]:
        """Encode each document as its lines; identical ids to whole-document encoding (see SAFE_CUT)."""
        pieces = [SAFE_CUT.split(d) for d in docs]
        flat = [p for ps in pieces for p in ps]
        encoded = iter(self.tokenizer.encode_batch_fast(flat, add_special_tokens=False))
        return [np.concatenate([np.asarray(next(encoded).ids, dtype=np.int64) for _ in ps]) if ps else
                np.zeros(0, np.int64) for ps in pieces]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


def check_bpe_vocab_size(vocab_size: int) -> int:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not BPE_MIN_VOCAB <= vocab_size <= 2**31:
        raise ValueError(f"data.vocab_size={vocab_size!r}: expected an integer in [{BPE_MIN_VOCAB}, 2**31] for bpe")
    return vocab_size


def train_bpe(docs: Iterable[str], vocab_size: int, out_path: str | os.PathLike, min_frequency: int = 2) -> BPETokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenization, no prefix space) and save it atomically."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    check_bpe_vocab_size(vocab_size)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(docs, trainer)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, tok.to_str().encode("utf-8"))
    return BPETokenizer(out_path)
