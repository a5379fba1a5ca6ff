"""Text pipeline: article splitting, word counts, token cache (reuse, invalidation, recovery, bad input)."""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from akira.data.text import cache as cache_mod
from akira.data.text.cache import choose_dtype, token_cache
from akira.data.text.datamodule import TextDataModule
from akira.data.text.fixture import wikitext_like
from akira.data.text.sources import count_words, iter_documents, scan_units
from akira.data.text.tokenizer import ByteTokenizer, load_gpt2

SHARED_GPT2 = Path("/work/shared/data/gpt2")


def write_wikitext(d: Path, n_articles=(6, 3, 3), variant="tokens", seed=0) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i, (split, n) in enumerate(zip(("train", "valid", "test"), n_articles)):
        (d / f"wiki.{split}.{variant}").write_text(wikitext_like(n, seed=seed + i), encoding="utf-8")
    return d


def hand_words(text: str) -> int:
    return sum(len(line.split()) + 1 for line in text.splitlines(keepends=True))


def dm_for(d: Path, tmp: Path, **kw) -> TextDataModule:
    args = dict(source="wikitext-2", local_dir=str(d), data_dir=str(tmp / "data"), tokenizer="byte", seq_len=16,
                batch_size=4, num_proc=1, download=False)
    args.update(kw)
    return TextDataModule(**args)


# --------------------------------------------------------------------------- articles and words
def test_article_splitting_and_word_counts(tmp_path):
    text = wikitext_like(7, seed=3)
    p = tmp_path / "wiki.valid.tokens"
    p.write_text(text, encoding="utf-8")
    docs = list(iter_documents(p))
    assert len(docs) == 7
    assert "".join(docs) == text  # lossless: documents are exact line spans
    assert docs[0].startswith(" \n = Article 0 ")  # whitespace preamble joins the first article
    for i, doc in enumerate(docs[1:], start=1):
        assert doc.startswith(f" = Article {i} ")
        assert doc.count(" = = Section ") == 2 and " = 1 <unk> / s = " in doc  # not boundaries
    assert count_words(text) == hand_words(text) == sum(count_words(d) for d in docs)
    assert count_words("a b\n\nc") == 3 + 3 and count_words(" \n") == 1 and count_words("") == 0
    units, size = scan_units(p, max_unit_bytes=1000)  # long documents are cut, but only 7 start a document
    assert size == len(text.encode()) and sum(is_doc for _, is_doc in units) == 7 and len(units) > 7


def test_text_without_headings_is_one_document(tmp_path):
    p = tmp_path / "plain.txt"
    p.write_text("no headings here\n = = not level one = = \n second line\n", encoding="utf-8")
    assert len(list(iter_documents(p))) == 1


def test_cache_layout_counts_and_dtype(tmp_path):
    d = write_wikitext(tmp_path / "wt")
    dm = dm_for(d, tmp_path)
    c = dm.cache("valid")
    text = (d / "wiki.valid.tokens").read_text(encoding="utf-8")
    expected = np.concatenate([np.r_[256, np.frombuffer(doc.encode(), np.uint8).astype(np.int64)] for doc in iter_documents(d / "wiki.valid.tokens")])
    assert c.tokens.dtype == np.uint16 and isinstance(c.tokens, np.memmap)
    np.testing.assert_array_equal(np.asarray(c.tokens), expected)
    assert (dm.tokens("valid"), dm.words("valid"), dm.documents("valid")) == (len(expected), hand_words(text), 3)
    assert dm.vocab_size == 257 and dm.eot_id == 256 and dm.scored_tokens("val") == len(expected) - 1
    meta = json.loads(c.bin_path.with_name("valid.meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["name"] == "byte" and len(meta["source"]["sha256"]) == 64
    assert c.bin_path.name == meta["bin"] == f"valid-{meta['source']['sha256'][:12]}.bin"
    assert os.path.getsize(c.bin_path) == len(expected) * 2


def test_parallel_build_equals_serial(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text(wikitext_like(60, seed=1), encoding="utf-8")
    tok = ByteTokenizer()
    a = token_cache(p, "train", tok, tmp_path / "c1", num_proc=1)
    b = token_cache(p, "train", tok, tmp_path / "c2", num_proc=2, chunk_bytes=4096)  # many ranges, 2 processes
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    assert (a.n_words, a.n_documents) == (b.n_words, b.n_documents) == (count_words(p.read_text()), 60)


def test_bpe_tokenizer_trained_saved_and_parallel(tmp_path):
    d = write_wikitext(tmp_path / "wt", n_articles=(20, 3, 3))
    dm = dm_for(d, tmp_path, tokenizer="bpe", vocab_size=300, bpe_min_frequency=1, num_proc=2)
    c = dm.cache("valid")
    saved = list((dm.cache_root / "tokenizers").glob("bpe-v300-f1-*.json"))
    assert len(saved) == 1 and 257 < dm.vocab_size <= 300 and dm.eot_id == 0
    toks = np.asarray(c.tokens)
    assert toks.max() < dm.vocab_size and (toks == 0).sum() == 3  # one eot per document
    docs = list(iter_documents(d / "wiki.valid.tokens"))
    assert dm.tokenizer.decode(toks[1:]).replace("<|endoftext|>", "") == "".join(docs)
    # line-wise encoding (the speed-up in BPETokenizer.encode_batch) gives exactly the whole-text ids
    rng = np.random.default_rng(0)
    alphabet = np.array(list("ab1.' \n\té") + ["'s", " =", "<unk>", " \n", "\n "])
    texts = docs + ["".join(rng.choice(alphabet, size=rng.integers(1, 60))) for _ in range(300)]
    hf = dm.tokenizer.tokenizer
    for text, ids in zip(texts, dm.tokenizer.encode_batch(texts)):
        assert ids.tolist() == hf.encode(text, add_special_tokens=False).ids, repr(text)


# --------------------------------------------------------------------------- reuse / invalidation / recovery
def test_corpora_sharing_a_cache_dir_keep_their_own_caches(tmp_path):
    """Two copies of one WikiText variant with different text (or WikiText-2 and -103) under one data.cache_dir:
    each reads its own tokens, and neither rebuilds the other's cache."""
    a, b = write_wikitext(tmp_path / "a", seed=0), write_wikitext(tmp_path / "b", seed=10)
    dms = [dm_for(d, tmp_path, cache_dir=str(tmp_path / "shared")) for d in (a, b)]
    for dm in dms:
        dm.prepare_data()
    builds = cache_mod.stats["builds"]
    for dm, d in zip(dms, (a, b)):
        text = (d / "wiki.valid.tokens").read_text(encoding="utf-8")
        got = dm.tokenizer.decode(np.asarray(dm.cache("valid").tokens).tolist())
        assert got.replace("<|endoftext|>", "").strip()[:200] == text.strip()[:200]
    assert cache_mod.stats["builds"] == builds


def test_a_copy_that_keeps_the_mtime_is_still_noticed(tmp_path):
    """Same size and mtime, new content (`cp -p`, `rsync -t`): the ctime differs, so the text is re-hashed and
    the cache rebuilt."""
    d = write_wikitext(tmp_path / "wt")
    valid = d / "wiki.valid.tokens"
    old = np.asarray(dm_for(d, tmp_path).cache("valid").tokens).copy()
    st = valid.stat()
    text = valid.read_text(encoding="utf-8")
    valid.write_text(text.swapcase(), encoding="utf-8")                  # same length, other bytes
    os.utime(valid, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (valid.stat().st_size, valid.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    new = np.asarray(dm_for(d, tmp_path).cache("valid").tokens)
    assert len(new) == len(old) and not np.array_equal(new, old)


def test_a_rebuild_leaves_the_file_a_running_job_reads(tmp_path):
    """The source text changes while a job runs: the rebuilt cache is a new file, and the job's DataLoader
    workers, which reopen their memmap by path, still read the tokens the job started with."""
    import pickle

    from akira.data.text.windows import _Tokens
    d = write_wikitext(tmp_path / "wt")
    running = dm_for(d, tmp_path).cache("valid")
    old = np.asarray(running.tokens).copy()
    worker_view = pickle.dumps(_Tokens(running))                 # as a DataLoader worker receives it
    valid = d / "wiki.valid.tokens"
    valid.write_text(" = New article = \n\n more text \n\n" + valid.read_text(encoding="utf-8"), encoding="utf-8")
    rebuilt = dm_for(d, tmp_path).cache("valid")
    assert rebuilt.bin_path != running.bin_path and rebuilt.n_tokens > len(old)
    np.testing.assert_array_equal(np.asarray(pickle.loads(worker_view).array), old)


def test_cache_reuse_does_not_retokenize(tmp_path):
    d = write_wikitext(tmp_path / "wt")
    dm_for(d, tmp_path).prepare_data()
    bins = sorted((tmp_path / "data").rglob("*.bin"), key=lambda b: b.name)
    assert [b.name.split("-")[0] for b in bins] == ["test", "train", "valid"]
    mtimes = [b.stat().st_mtime_ns for b in bins]
    builds = cache_mod.stats["builds"]
    dm2 = dm_for(d, tmp_path)
    dm2.prepare_data()
    dm2.setup("fit")
    assert cache_mod.stats["builds"] == builds
    assert [b.stat().st_mtime_ns for b in bins] == mtimes


def test_cache_invalidated_on_tokenizer_and_source_change(tmp_path):
    d = write_wikitext(tmp_path / "wt", n_articles=(12, 3, 3))
    byte = dm_for(d, tmp_path)
    byte_bin = byte.cache("valid").bin_path
    b300 = dm_for(d, tmp_path, tokenizer="bpe", vocab_size=300, bpe_min_frequency=1)
    builds = cache_mod.stats["builds"]
    bpe_bin = b300.cache("valid").bin_path
    assert cache_mod.stats["builds"] == builds + 1 and bpe_bin != byte_bin
    b320 = dm_for(d, tmp_path, tokenizer="bpe", vocab_size=320, bpe_min_frequency=1)
    assert b320.cache("valid").bin_path not in (bpe_bin, byte_bin)
    assert cache_mod.stats["builds"] == builds + 2
    # the other tokenizers' caches stay valid (no rebuild)
    assert dm_for(d, tmp_path).cache("valid").bin_path == byte_bin and cache_mod.stats["builds"] == builds + 2
    # source text changed -> only that split is rebuilt
    test_bin = dm_for(d, tmp_path).cache("test").bin_path
    t_test, builds = test_bin.stat().st_mtime_ns, cache_mod.stats["builds"]
    (d / "wiki.valid.tokens").write_text(wikitext_like(4, seed=9), encoding="utf-8")
    fresh = dm_for(d, tmp_path)
    assert fresh.documents("valid") == 4 and cache_mod.stats["builds"] == builds + 1
    assert fresh.cache("test").bin_path.stat().st_mtime_ns == t_test


def _build_in_child(args):
    path, cache_dir = args
    token_cache(path, "train", ByteTokenizer(), cache_dir)
    return cache_mod.stats["builds"]


def test_concurrent_jobs_build_once(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(wikitext_like(400, seed=2), encoding="utf-8")  # ~0.3 MB: the build takes a moment
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(3) as pool:  # three jobs start on the same missing cache at once
        builds = pool.map(_build_in_child, [(p, tmp_path / "c")] * 3, chunksize=1)
    before = cache_mod.stats["builds"]
    assert sum(builds) - 3 * before == 1  # (children inherit this process's counter)
    assert token_cache(p, "train", ByteTokenizer(), tmp_path / "c").n_documents == 400
    assert cache_mod.stats["builds"] == before


@pytest.mark.parametrize("damage", ["truncate", "bad_json", "meta_count"])
def test_recovery_from_damaged_cache(tmp_path, damage):
    d = write_wikitext(tmp_path / "wt")
    dm = dm_for(d, tmp_path)
    dm.prepare_data()
    good = np.asarray(dm.cache("valid").tokens).copy()
    vbin = dm.cache("valid").bin_path
    meta = vbin.with_name("valid.meta.json")
    others = {p: p.stat().st_mtime_ns for p in vbin.parent.iterdir() if not p.name.startswith("valid")}
    if damage == "truncate":
        with open(vbin, "r+b") as f:
            f.truncate(vbin.stat().st_size - 6)
    elif damage == "bad_json":
        meta.write_text('{"format": 1, "n_tok')
    else:
        m = json.loads(meta.read_text())
        m["n_tokens"] += 5
        meta.write_text(json.dumps(m))
    builds = cache_mod.stats["builds"]
    again = dm_for(d, tmp_path)
    np.testing.assert_array_equal(np.asarray(again.cache("valid").tokens), good)
    assert cache_mod.stats["builds"] == builds + 1
    assert {p: p.stat().st_mtime_ns for p in others} == others  # other splits untouched
    assert not list(vbin.parent.glob("*.tmp-*"))


def test_failed_build_keeps_existing_cache(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(wikitext_like(3), encoding="utf-8")
    good = token_cache(p, "valid", ByteTokenizer(), tmp_path / "c")
    before = {q: q.read_bytes() for q in good.bin_path.parent.iterdir() if not q.name.endswith(".lock")}

    class Wild(ByteTokenizer):  # claims a small vocabulary but emits an id that does not fit uint16
        hash = "f" * 64

        def encode_batch(self, docs):
            return [np.full(3, 70000, dtype=np.int64) for _ in docs]

    with pytest.raises(ValueError, match="outside uint16"):
        token_cache(p, "valid", Wild(), tmp_path / "c")
    after = {q: q.read_bytes() for q in good.bin_path.parent.iterdir() if not q.name.endswith(".lock")}
    assert after == before
    wild_dir = tmp_path / "c" / f"byte-{'f' * 12}"
    assert not [q for q in wild_dir.iterdir() if not q.name.endswith(".lock")]  # no partial files


# --------------------------------------------------------------------------- bad input: one clear line
def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) > 20
    return msg


def test_bad_input_errors(tmp_path, monkeypatch):
    d = write_wikitext(tmp_path / "wt")
    with pytest.raises(ValueError, match="data.tokenizer='sentencepiece'") as e:
        dm_for(d, tmp_path, tokenizer="sentencepiece")
    assert "gpt2, bpe, byte" in _one_line(e)
    with pytest.raises(FileNotFoundError, match="wiki.train.raw") as e:  # wrong layout for the variant
        dm_for(d, tmp_path, variant="raw").prepare_data()
    assert "data.local_dir" in _one_line(e)
    with pytest.raises(FileNotFoundError, match="data.local_dir"):
        dm_for(tmp_path / "nowhere", tmp_path).prepare_data()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="data.valid_path=.*empty") as e:
        TextDataModule(source="text", valid_path=str(empty), tokenizer="byte", data_dir=str(tmp_path)).cache("valid")
    _one_line(e)
    with pytest.raises(FileNotFoundError, match="data.valid_path=.*not found"):
        TextDataModule(source="text", valid_path=str(tmp_path / "missing.txt"), tokenizer="byte").cache("valid")
    with pytest.raises(ValueError, match="data.test_path is not set"):
        TextDataModule(source="text", valid_path=str(empty), tokenizer="byte").cache("test")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(" = A = \n \n caf\xe9 \n".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8 at byte 14"):
        TextDataModule(source="text", valid_path=str(bad), tokenizer="byte", data_dir=str(tmp_path)).cache("valid")
    with pytest.raises(ValueError, match="data.token_dtype=uint16.*70000"):
        choose_dtype(70000, "uint16")
    with pytest.raises(ValueError, match="data.token_dtype=uint16"):
        dm_for(d, tmp_path, tokenizer="bpe", vocab_size=70000, token_dtype="uint16")
    assert choose_dtype(65536) == np.uint16 and choose_dtype(65537) == np.uint32
    with pytest.raises(ValueError, match="data.vocab_size=100"):
        dm_for(d, tmp_path, tokenizer="bpe", vocab_size=100)
    with pytest.raises(ValueError, match="data.eval_stride=0"):
        dm_for(d, tmp_path, eval_stride=0)
    with pytest.raises(ValueError, match="data.sampling='shuffle'"):
        dm_for(d, tmp_path, sampling="shuffle")
    # offline: the hub source says where it looked and how to point data.local_dir at local files
    with pytest.raises(FileNotFoundError, match="data.source=wikitext-103") as e:
        TextDataModule(source="wikitext-103", data_dir=str(tmp_path / "d"), tokenizer="byte", download=False).prepare_data()
    msg = _one_line(e)
    assert str(tmp_path / "d" / "wikitext-103") in msg and "data.local_dir" in msg and "huggingface.co" in msg
    # gpt2 without files/cache/network: names the files and the variable
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    with pytest.raises(FileNotFoundError, match="data.tokenizer=gpt2") as e:
        load_gpt2(None, allow_download=False)
    msg = _one_line(e)
    assert "vocab.json" in msg and "merges.txt" in msg and "TIKTOKEN_CACHE_DIR" in msg and "data.tokenizer_dir" in msg
    with pytest.raises(FileNotFoundError, match="data.tokenizer_dir"):
        load_gpt2(tmp_path)


@pytest.mark.skipif(not SHARED_GPT2.is_dir(), reason="GPT-2 BPE files not available on this machine")
def test_gpt2_offline_from_local_files(tmp_path):
    tok = load_gpt2(SHARED_GPT2)
    assert tok.n_vocab == 50257 and tok.eot_id == 50256
    assert [a.tolist() for a in tok.encode_batch(["Hello world", "<|endoftext|>"])][0] == [15496, 995]
    assert 50256 not in tok.encode_batch(["<|endoftext|>"])[0]  # literal text is never the special token
    d = write_wikitext(tmp_path / "wt")
    dm = dm_for(d, tmp_path, tokenizer="gpt2", tokenizer_dir=str(SHARED_GPT2))
    toks = np.asarray(dm.cache("valid").tokens)
    assert toks.dtype == np.uint16 and (toks == 50256).sum() == 3 and dm.vocab_size == 50257


def test_wikitext_files_already_under_data_dir_need_no_download(tmp_path):
    write_wikitext(tmp_path / "data" / "wikitext-2", variant="raw")
    dm = TextDataModule(source="wikitext-2", variant="raw", data_dir=str(tmp_path / "data"), tokenizer="byte",
                        download=False, num_proc=1)
    dm.prepare_data()
    assert dm.documents("train") == 6
    assert dm.cache("test").bin_path.parent.parent.parent == tmp_path / "data" / "wikitext-2" / "cache"
    assert dm.cache("test").bin_path.parent.parent.name.startswith("raw-")


def test_zip_mirror_download_writes_the_splits_atomically(tmp_path, monkeypatch):
    """The download path without network: urlopen serves a local zip shaped like the mirror's."""
    import io
    import urllib.request
    import zipfile

    from akira.data.text import hub

    buf = io.BytesIO()
    texts = {s: f" = {s} = \n \n text of {s} \n" for s in ("train", "valid", "test")}
    with zipfile.ZipFile(buf, "w") as z:
        for split, text in texts.items():
            z.writestr(f"wikitext-2-raw/wiki.{split}.raw", text)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        if "huggingface" in url:
            raise ConnectionError("HTTPSConnectionPool(host='huggingface.co', port=443): Max retries " + "x" * 200)
        return io.BytesIO(buf.getvalue())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(hub, "_from_hub_parquet", lambda *a: (_ for _ in ()).throw(ConnectionError("no network")))
    dest = hub.download_wikitext("wikitext-2", "raw", tmp_path / "wt2")
    assert urls == [f"{hub.ZIP_MIRROR}/wikitext-2-raw-v1.zip"]
    for split, text in texts.items():
        assert (dest / f"wiki.{split}.raw").read_text(encoding="utf-8") == text
    assert sorted(p.name for p in dest.iterdir()) == ["wiki.test.raw", "wiki.train.raw", "wiki.valid.raw"]


def test_failed_downloads_end_in_one_short_line(tmp_path, monkeypatch):
    from akira.data.text import hub

    def fail(*args):
        raise ConnectionError("HTTPSConnectionPool(host='example.org', port=443): Max retries exceeded with url: "
                              + "/x" * 200 + "\nsecond line")

    monkeypatch.setattr(hub, "_from_hub_parquet", fail)
    monkeypatch.setattr(hub, "_from_zip_mirror", fail)
    with pytest.raises(FileNotFoundError) as info:
        hub.download_wikitext("wikitext-2", "raw", tmp_path / "wt2")
    msg = str(info.value)
    assert "\n" not in msg and "second line" not in msg
    assert msg.count("ConnectionError: HTTPSConnectionPool(host='example.org', port=443): Max retries") == 2
    assert str(tmp_path / "wt2") in msg and len(msg) < 1200


def test_resume_with_other_batch_order_settings_is_refused(tmp_path):
    """The batch order depends on (seed, sampling, seq_len, batch_size): resuming with other values would
    silently train on other data than the interrupted run would have, so it fails naming the key."""
    d = write_wikitext(tmp_path / "wt")
    state = dm_for(d, tmp_path).state_dict()
    state["train_step"] = 5
    same = dm_for(d, tmp_path)
    same.load_state_dict(state)
    assert same.train_step == 5
    for kw, key in (({"seq_len": 8}, "data.seq_len"), ({"batch_size": 2}, "data.batch_size"),
                    ({"seed": 7}, "data.seed")):
        with pytest.raises(ValueError, match=key):
            dm_for(d, tmp_path, **kw).load_state_dict(state)
