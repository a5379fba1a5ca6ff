"""Language-model evaluation from summed negative log-likelihoods.

- token loss `= total NLL / scored tokens`, token perplexity `ppl = exp(loss)`;
- word-normalised perplexity `word_ppl = exp(total NLL / WikiText words)` (words per
  `akira.data.text.sources.count_words`; the NLL is summed over every scored token of the split, so
  the per-word cost includes the tokens of `<eos>`-equivalent newlines and the end-of-text tokens).

`masked_nll_sum` turns logits into the two sums for one batch; `NLLSum` accumulates them across batches
and DDP ranks (a torchmetrics Metric, fp64 sum); `perplexities` turns sums into the logged numbers.
`unigram_log_probs` is the trivial baseline reported beside every LM: token frequencies of the training
split (add-`alpha` smoothed over the vocabulary), scored on the same targets as the model.
Word perplexity is only meaningful over the whole split (no `limit_*_batches`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric


def masked_nll_sum(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL (fp64 scalar) and number of scored tokens (int64 scalar).

    logits `(B, T, V)`, targets `(B, T)` int64, mask `(B, T)` bool/0-1 weights of the scored targets
    (None: all). The cross-entropy is computed in fp32.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)}: expected (B, T, V) and (B, T)")
    nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    if mask is None:
        return nll.double().sum(), torch.tensor(targets.numel(), dtype=torch.int64, device=targets.device)
    m = mask.reshape(-1)
    return (nll.double() * m.double()).sum(), m.sum().to(torch.int64)


def unigram_log_probs(tokens: np.ndarray, vocab_size: int, alpha: float = 1.0, chunk: int = 1 << 24) -> torch.Tensor:
    """`(vocab_size,)` float64 log-probabilities `log((count + alpha) / (N + alpha * V))` of a token stream
    (`(N,)` ints, e.g. a memmap; counted in chunks of `chunk` tokens, so memory stays bounded)."""
    if vocab_size < 1 or alpha <= 0:
        raise ValueError(f"unigram_log_probs: vocab_size={vocab_size} and alpha={alpha} must be positive")
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), chunk):
        part = np.asarray(tokens[start:start + chunk]).astype(np.int64, copy=False)
        if part.size and (part.min() < 0 or part.max() >= vocab_size):
            raise ValueError(f"unigram_log_probs: token ids outside [0, {vocab_size})")
        counts += np.bincount(part, minlength=vocab_size)
    probs = (torch.from_numpy(counts).double() + alpha) / (counts.sum() + alpha * vocab_size)
    return probs.log()


def perplexities(nll_sum: float, n_tokens: int, n_words: int | None = None) -> dict[str, float]:
    """`{"loss", "ppl"}` (+ `"word_ppl"` when `n_words` is given) from summed NLL and counts."""
    nll_sum, n_tokens = float(nll_sum), int(n_tokens)
    if n_tokens <= 0:
        raise ValueError(f"n_tokens={n_tokens}: expected > 0 scored tokens")
    loss = nll_sum / n_tokens
    out = {"loss": loss, "ppl": _exp(loss)}
    if n_words is not None:
        if int(n_words) <= 0:
            raise ValueError(f"n_words={n_words}: expected > 0 words")
        out["word_ppl"] = _exp(nll_sum / int(n_words))
    return out


def word_perplexity(nll_sum: float, n_words: int) -> float:
    """`exp(total NLL / WikiText words)`."""
    if int(n_words) <= 0:
        raise ValueError(f"n_words={n_words}: expected > 0 words")
    return _exp(float(nll_sum) / int(n_words))


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf


class NLLSum(Metric):
    """Accumulates summed NLL and scored-token count (summed across DDP ranks).

    `update(logits, targets, mask=None)` with shapes as in `masked_nll_sum`, or
    `update_sums(nll_sum, n_tokens)`. `compute()` -> mean token loss (tensor); `perplexities(n_words)`
    -> dict of floats (`loss`, `ppl`, `word_ppl`).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        nll, n = masked_nll_sum(logits.detach(), targets, mask)
        self.update_sums(nll, n)

    def update_sums(self, nll_sum, n_tokens) -> None:
        self.nll += torch.as_tensor(nll_sum, dtype=torch.float64, device=self.nll.device)
        self.count += torch.as_tensor(n_tokens, dtype=torch.int64, device=self.count.device)

    def compute(self) -> torch.Tensor:
        return self.nll / self.count.clamp_min(1)

    def perplexities(self, n_words: int | None = None) -> dict[str, float]:
        """Perplexities of the sums gathered over all DDP ranks (a no-op sync in one process)."""
        with self.sync_context():
            nll, count = float(self.nll), int(self.count)
        return perplexities(nll, count, n_words)
