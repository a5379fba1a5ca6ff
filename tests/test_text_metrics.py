"""Perplexities: word-normalised perplexity by hand on toy causal LMs equals the module's evaluation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from akira.data.text.datamodule import TextDataModule
from akira.data.text.fixture import wikitext_like
from akira.data.text.metrics import NLLSum, masked_nll_sum, perplexities, word_perplexity


class Bigram(nn.Module):
    """logits[b, t] = table[x[b, t]]: (B, T) -> (B, T, V)."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.table[x]


class CausalConvLM(nn.Module):
    """Embedding + left-padded Conv1d (kernel 3) + linear head: (B, T) -> (B, T, V); sees x[t-2..t]."""

    def __init__(self, vocab: int, dim: int = 8, kernel: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.kernel = kernel
        self.emb, self.conv, self.head = nn.Embedding(vocab, dim), nn.Conv1d(dim, dim, kernel), nn.Linear(dim, vocab)

    def forward(self, x):
        h = F.pad(self.emb(x).transpose(1, 2), (self.kernel - 1, 0))
        return self.head(torch.tanh(self.conv(h)).transpose(1, 2))


@pytest.fixture
def wiki_dm(tmp_path):
    text = wikitext_like(4, seed=11)
    for split in ("train", "valid", "test"):
        (tmp_path / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")

    def make(**kw):
        args = dict(source="wikitext-103", local_dir=str(tmp_path), data_dir=str(tmp_path / "d"), tokenizer="byte",
                    seq_len=32, batch_size=4, eval_batch_size=16, num_proc=1, download=False)
        args.update(kw)
        return TextDataModule(**args)

    words = sum(len(line.split()) + 1 for line in text.splitlines(keepends=True))  # WikiText convention
    return make, words


def evaluate(model, loader, words):
    metric = NLLSum()
    with torch.no_grad():
        for x, y, mask in loader:
            metric.update(model(x), y, mask)
    return metric.perplexities(words), int(metric.count)


@pytest.mark.parametrize("stride", [None, 20, 7])
def test_word_ppl_by_hand_bigram(wiki_dm, stride):
    make, words = wiki_dm
    dm = make(eval_stride=stride)
    dm.setup("test")
    model = Bigram(dm.vocab_size)
    toks = torch.from_numpy(np.asarray(dm.cache("test").tokens).astype(np.int64))
    lsm = torch.log_softmax(model.table.detach().double(), dim=-1).numpy()
    total = -sum(lsm[a, b] for a, b in zip(toks[:-1].tolist(), toks[1:].tolist()))  # every target once, by hand
    assert dm.words("test") == words
    got, count = evaluate(model, dm.test_dataloader(), dm.words("test"))
    assert count == len(toks) - 1 == dm.scored_tokens("test")
    assert got["word_ppl"] == pytest.approx(math.exp(total / words), rel=1e-6)
    assert got["ppl"] == pytest.approx(math.exp(total / (len(toks) - 1)), rel=1e-6)
    assert got["loss"] == pytest.approx(total / (len(toks) - 1), rel=1e-6)


def test_sliding_window_gives_full_context_nll(wiki_dm):
    make, words = wiki_dm
    model = CausalConvLM(257)
    dm = make(eval_stride=16)  # scored targets keep >= 16 tokens of context > kernel - 1
    dm.setup("validate")
    toks = torch.from_numpy(np.asarray(dm.cache("valid").tokens).astype(np.int64))
    with torch.no_grad():  # the whole split as one sequence: every target with its full context
        full = F.cross_entropy(model(toks[None, :-1])[0].double(), toks[1:], reduction="sum").item()
    got, _ = evaluate(model, dm.val_dataloader(), dm.words("valid"))
    assert got["word_ppl"] == pytest.approx(math.exp(full / words), rel=1e-5)
    nonoverlap, _ = evaluate(model, make().val_dataloader(), words)  # window starts lose context
    assert nonoverlap["word_ppl"] != pytest.approx(got["word_ppl"], rel=1e-5)


def test_masked_sums_and_errors():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(2))
    nll, n = masked_nll_sum(logits, y)
    assert n.item() == 10 and nll.item() == pytest.approx(F.cross_entropy(logits.reshape(-1, 11), y.reshape(-1)).item() * 10, rel=1e-6)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, 3:] = True
    nll_m, n_m = masked_nll_sum(logits, y, mask)
    assert n_m.item() == 4
    assert nll_m.item() == pytest.approx(F.cross_entropy(logits[:, 3:].reshape(-1, 11), y[:, 3:].reshape(-1), reduction="sum").item(), rel=1e-6)
    out = perplexities(nll_m.item(), 4, n_words=2)
    assert out["word_ppl"] == pytest.approx(math.exp(nll_m.item() / 2)) == word_perplexity(nll_m.item(), 2)
    with pytest.raises(ValueError, match="n_tokens=0"):
        perplexities(1.0, 0)
    with pytest.raises(ValueError, match="n_words=0"):
        word_perplexity(1.0, 0)
    with pytest.raises(ValueError, match="logits"):
        masked_nll_sum(logits, y[:, :4])


def test_unigram_log_probs_are_smoothed_frequencies():
    from akira.data.text.metrics import unigram_log_probs

    tokens = np.array([0, 1, 1, 3, 3, 3], dtype=np.uint16)
    logp = unigram_log_probs(tokens, vocab_size=5, alpha=1.0, chunk=4)  # chunks of 4: counted in two parts
    expected = torch.tensor([2, 3, 1, 4, 1], dtype=torch.float64) / (6 + 5)
    torch.testing.assert_close(logp, expected.log())
    assert float(logp.exp().sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        unigram_log_probs(tokens, vocab_size=3)
