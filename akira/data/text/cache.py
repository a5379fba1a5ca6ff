"""Token cache: each split tokenized once into a flat `.bin` memmap plus `meta.json`.

Layout: `<cache_dir>/<tokenizer name>-<tokenizer hash[:12]>/<split>.meta.json` and the `.bin` it names,
`<split>-<source sha256[:12]>.bin` (raw little-endian uint16, or uint32 when the vocabulary has more than 65,536
ids); `TextDataModule` gives every source file its own cache_dir. meta.json:
`format, split, bin, source {path, size, mtime_ns, ctime_ns, sha256}, tokenizer {name, hash, n_vocab, eot_id},
dtype, n_tokens, n_words, n_documents, text_bytes`. The stream is `eot doc_1 eot doc_2 ... eot doc_n`
(end-of-text *before* every document, so the first token of every document is predicted from a context
and `n_tokens = content tokens + n_documents`). `n_words` follows `sources.count_words`.

Building: the file is scanned for document boundaries, documents are grouped into ~1 MiB byte ranges,
and a process pool (fork) tokenizes the ranges in parallel; results are written in order to a temp file
(bounded number in flight, so memory does not grow with the corpus), fsync'ed and `os.replace`d, then
meta.json likewise. A `filelock.FileLock` on `<split>.lock` makes concurrent jobs build it once.
A cache is reused when meta.json parses and matches the source content hash (re-hashed only when the
file's size, mtime or ctime changed), the tokenizer name/hash, the dtype, and the `.bin` size equals
`n_tokens * itemsize`; otherwise that one split is rebuilt — other caches are never touched, and a failed
build leaves the previous files as they were. A rebuild after the source text changed writes a new `.bin`
(its name carries the content hash) and leaves the old one, so a running job that reopens its memmap by path
(DataLoader workers do) still reads the tokens its meta.json described; superseded files are logged, not
deleted.
"""
from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from .fileio import atomic_write_json, commit, file_sha256, temp_path
from .sources import count_words, decode_utf8, scan_units

log = logging.getLogger(__name__)

CACHE_FORMAT = 2   # 2: per-source file names, meta.json names its .bin
TOKEN_DTYPES = ("auto", "uint16", "uint32")
stats = {"builds": 0}  # (re)builds done by this process; tests use it to check reuse


def choose_dtype(n_vocab: int, token_dtype: str = "auto") -> np.dtype:
    """uint16 when every id (< n_vocab) fits, i.e. n_vocab <= 65536; uint32 up to 2**32 ids."""
    if token_dtype not in TOKEN_DTYPES:
        raise ValueError(f"data.token_dtype={token_dtype!r}: expected one of {', '.join(TOKEN_DTYPES)}")
    if token_dtype == "auto":
        token_dtype = "uint16" if n_vocab <= 2**16 else "uint32"
    dtype = np.dtype(token_dtype)
    if n_vocab > np.iinfo(dtype).max + 1:
        raise ValueError(
            f"data.token_dtype={token_dtype}: a vocabulary of {n_vocab} ids (max id {n_vocab - 1}) does not fit "
            f"(max {np.iinfo(dtype).max}); use auto or uint32"
        )
    return dtype


@dataclass
class TokenCache:
    """One split's token stream: `tokens` is a read-only `(n_tokens,)` memmap of `dtype`."""

    bin_path: Path
    meta: dict

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def n_words(self) -> int:
        return int(self.meta["n_words"])

    @property
    def n_documents(self) -> int:
        return int(self.meta["n_documents"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    @cached_property
    def tokens(self) -> np.memmap:
        return np.memmap(self.bin_path, dtype=self.dtype, mode="r", shape=(self.n_tokens,))


def cache_paths(cache_dir: str | os.PathLike, split: str, tokenizer) -> tuple[Path, Path]:
    """(meta.json, lock file) of `split`'s cache for `tokenizer` (module docstring)."""
    d = Path(cache_dir) / f"{tokenizer.name}-{tokenizer.hash[:12]}"
    return d / f"{split}.meta.json", d / f"{split}.lock"


def _bin_path(meta_path: Path, sha256: str) -> Path:
    """The `.bin` of the cache whose meta.json is meta_path, for source content with this sha256."""
    return meta_path.with_name(meta_path.name.removesuffix(".meta.json") + f"-{sha256[:12]}.bin")


def token_cache(
    text_path: str | os.PathLike,
    split: str,
    tokenizer,
    cache_dir: str | os.PathLike,
    *,
    num_proc: int = 1,
    token_dtype: str = "auto",
    lock_timeout: float | None = None,
    chunk_bytes: int = 1 << 20,
    max_unit_bytes: int = 8 << 20,
) -> TokenCache:
    """Return the valid cache of `text_path` for `tokenizer`, building it (once, under a lock) if needed."""
    text_path = Path(text_path)
    dtype = choose_dtype(tokenizer.n_vocab, token_dtype)
    meta_path, lock_path = cache_paths(cache_dir, split, tokenizer)
    meta, problem = _check(meta_path, text_path, tokenizer, dtype)
    if problem is None:
        return TokenCache(meta_path.with_name(meta["bin"]), meta)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=-1 if lock_timeout is None else lock_timeout)
    try:
        with lock:
            meta, problem = _check(meta_path, text_path, tokenizer, dtype)  # another job may have built it
            if problem is None:
                return TokenCache(meta_path.with_name(meta["bin"]), meta)
            log.info("token cache %s: %s; tokenizing %s with %s", meta_path, problem, text_path, tokenizer.name)
            versions = _bin_path(meta_path, "*").name                   # this split's .bin of any source content
            for stale in meta_path.parent.glob(versions + ".tmp-*"):  # left by a killed build
                stale.unlink(missing_ok=True)
            meta = _build(text_path, split, tokenizer, dtype, meta_path, num_proc, chunk_bytes, max_unit_bytes)
            atomic_write_json(meta_path, meta)
            stats["builds"] += 1
            bin_path = meta_path.with_name(meta["bin"])
            old = sorted(p.name for p in meta_path.parent.glob(versions) if p != bin_path)
            if old:
                log.info("token cache %s: superseded files kept for jobs that may still read them: %s (delete "
                         "them when none does)", meta_path, ", ".join(old))
            return TokenCache(bin_path, meta)
    except Timeout:
        raise TimeoutError(f"token cache {meta_path}: lock {lock.lock_file} still held after {lock_timeout} s "
                           f"(another job building it? raise data.lock_timeout)") from None


def _source_stat(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _same_stat(stat: dict, src: dict) -> bool:
    """Size, mtime and ctime unchanged: the content is taken as unchanged without re-hashing it. The ctime is
    in it because copies that keep the mtime (`cp -p`, `rsync -t`, `tar x`) still set it."""
    return all(stat[k] == src.get(k) for k in ("size", "mtime_ns", "ctime_ns"))


def _check(meta_path: Path, text_path: Path, tokenizer, dtype: np.dtype) -> tuple[dict | None, str | None]:
    """(meta, None) if the cache is valid, else (None, why it is not)."""
    if not meta_path.exists():
        return None, "no cache yet"
    try:
        meta = json.loads(meta_path.read_text())
        src, tok = meta["source"], meta["tokenizer"]
        n_tokens = int(meta["n_tokens"])
        bin_path = meta_path.with_name(meta["bin"])
        if meta.get("format") != CACHE_FORMAT:
            return None, f"cache format {meta.get('format')} != {CACHE_FORMAT}"
        if (tok["name"], tok["hash"]) != (tokenizer.name, tokenizer.hash):
            return None, "tokenizer changed"
        if meta["dtype"] != dtype.name:
            return None, f"dtype {meta['dtype']} != {dtype.name}"
        stat = _source_stat(text_path)
        if not _same_stat(stat, src) and file_sha256(text_path) != src["sha256"]:
            return None, "source text changed"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"unreadable meta.json ({type(e).__name__})"
    expected = n_tokens * dtype.itemsize
    actual = bin_path.stat().st_size if bin_path.exists() else -1
    if actual != expected:
        return None, f"{bin_path.name} has {actual} bytes, meta.json says {expected} (truncated or mismatched)"
    return meta, None


def _build(text_path, split, tokenizer, dtype, meta_path, num_proc, chunk_bytes, max_unit_bytes) -> dict:
    t0 = time.perf_counter()
    stat = _source_stat(text_path)
    sha = file_sha256(text_path)
    bin_path = _bin_path(meta_path, sha)
    units, size = scan_units(text_path, max_unit_bytes)
    num_proc = max(1, int(num_proc or 1))
    chunk = int(min(chunk_bytes, max(64 << 10, size // (4 * num_proc) + 1)))
    tasks = _group(units, size, chunk)
    n_tokens = n_words = n_docs = 0
    tmp = temp_path(bin_path)
    try:
        with open(tmp, "wb") as f:
            for arr, words, docs in _run(tasks, tokenizer, str(text_path), dtype, num_proc):
                arr.tofile(f)
                n_tokens += arr.size
                n_words += words
                n_docs += docs
        commit(tmp, bin_path)
    finally:
        tmp.unlink(missing_ok=True)
    dt = time.perf_counter() - t0
    log.info("token cache %s: %d tokens, %d words, %d documents in %.1f s", bin_path, n_tokens, n_words, n_docs, dt)
    return {
        "format": CACHE_FORMAT,
        "split": split,
        "bin": bin_path.name,
        "source": {**stat, "sha256": sha},
        "tokenizer": {"name": tokenizer.name, "hash": tokenizer.hash, "n_vocab": tokenizer.n_vocab,
                      "eot_id": tokenizer.eot_id},
        "dtype": dtype.name,
        "n_tokens": n_tokens,
        "n_words": n_words,
        "n_documents": n_docs,
        "text_bytes": size,
        "layout": "eot before every document",
        "word_count_rule": "whitespace-separated tokens + 1 per line",
        "build_seconds": round(dt, 3),
    }


def _group(units: list[tuple[int, bool]], size: int, chunk: int) -> list[tuple[int, int, list[tuple[int, bool]]]]:
    """Group consecutive units into byte ranges of about `chunk` bytes: (start, end, [(rel_offset, is_doc)])."""
    bounds = [u[0] for u in units] + [size]
    tasks, cur, start = [], [], 0
    for (off, is_doc), end in zip(units, bounds[1:]):
        if not cur:
            start = off
        cur.append((off - start, is_doc))
        if end - start >= chunk:
            tasks.append((start, end, cur))
            cur = []
    if cur:
        tasks.append((start, size, cur))
    return tasks


_WORKER: dict = {}


def _init_worker(tokenizer, path: str, dtype_name: str, pool: bool = True) -> None:
    if pool:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _WORKER.update(tokenizer=tokenizer, path=path, dtype=np.dtype(dtype_name))


def _encode_task(task) -> tuple[np.ndarray, int, int]:
    """Tokenize one byte range: returns (tokens as the cache dtype, WikiText words, documents started)."""
    start, end, units = task
    tok, path, dtype = _WORKER["tokenizer"], _WORKER["path"], _WORKER["dtype"]
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    rel = [u[0] for u in units] + [len(data)]
    texts = [decode_utf8(data[a:b], path, start + a) for a, b in zip(rel[:-1], rel[1:])]
    words = sum(count_words(t) for t in texts)
    limit = np.iinfo(dtype).max
    eot = np.array([tok.eot_id], dtype=dtype)
    parts = []
    for (_, is_doc), ids in zip(units, tok.encode_batch(texts)):
        if ids.size and (int(ids.max()) > limit or int(ids.min()) < 0):
            bad = int(ids.max()) if int(ids.max()) > limit else int(ids.min())
            raise ValueError(f"tokenizer {tok.name} produced id {bad} outside {dtype.name} [0, {limit}] "
                             f"in {path} (set data.token_dtype=uint32)")
        if is_doc:
            parts.append(eot)
        parts.append(ids)
    out = np.concatenate(parts, dtype=dtype, casting="unsafe") if parts else np.zeros(0, dtype)  # ranges checked
    return out, words, sum(int(d) for _, d in units)


def _run(tasks, tokenizer, path: str, dtype: np.dtype, num_proc: int) -> Iterator[tuple[np.ndarray, int, int]]:
    """Results of `_encode_task` in order; a pool with at most 2*num_proc ranges in flight."""
    if num_proc <= 1 or len(tasks) <= 1:
        saved = dict(_WORKER)
        _init_worker(tokenizer, path, dtype.name, pool=False)
        try:
            for t in tasks:
                yield _encode_task(t)
        finally:
            _WORKER.clear()
            _WORKER.update(saved)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(tokenizer, path, dtype.name)) as pool:
        pending: deque = deque()
        for t in tasks:
            pending.append(pool.apply_async(_encode_task, (t,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
