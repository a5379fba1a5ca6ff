"""LanguageModelTask: next-token loss, perplexity, word-normalised perplexity, per-band dynamics.

Train batches are `(x, y)` int64 `(B, S)`; eval batches `(x, y, mask)` where `mask` marks the targets
scored (each token of a split exactly once). Logged: `train/loss`, `val/loss`, `val/ppl`, `val/gap`
(val - recent train loss), `test/loss`, `test/ppl`, `test/word_ppl`, and beside them the trivial unigram
baseline (training-split token frequencies, when the datamodule has a training split) on the same targets:
`test/loss_unigram`, `test/ppl_unigram`, `test/word_ppl_unigram`; for band models at every validation
`band/<i>/delta_loss` (val loss with band i's MLP output zeroed minus the full val loss) and every
`band_stats_every_n_steps` steps `band/<i>/grad_norm` and `band/<i>/update_ratio` (|dW| / |W| of the group).
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from akira.data.text.metrics import NLLSum
from akira.tasks.configure import clip_gradients, configure_optimizers, resume_schedule
from akira.tasks.optim import group_norms


class LanguageModelTask(pl.LightningModule):
    throughput_unit = "tokens"

    def __init__(self, model: nn.Module, optim: dict | None = None, total_steps: int = 1000,
                 band_stats_every_n_steps: int = 50, band_delta_loss: bool = True):
        super().__init__()
        self.model = model
        self.optim = dict(optim or {})
        self.total_steps = int(total_steps)
        self.band_stats_every_n_steps = int(band_stats_every_n_steps)
        self.n_bands = int(getattr(model, "n_bands", 0) or 0)
        self.band_delta_loss = bool(band_delta_loss) and self.n_bands > 0
        self.val_nll = NLLSum()
        self.test_nll = NLLSum()
        self.test_unigram_nll = NLLSum()
        self._unigram: torch.Tensor | None = None  # (V,) log-probs of the unigram baseline, set at test start
        self.band_nll = nn.ModuleList(NLLSum() for _ in range(self.n_bands if self.band_delta_loss else 0))
        self._recent_train = deque(maxlen=50)
        self._weights_before: dict[str, list[torch.Tensor]] = {}
        self._grad_norms: dict[str, float] = {}
        self.save_hyperparameters(ignore=["model"])

    # ------------------------------------------------------------------ helpers
    def items_per_batch(self, batch) -> int:
        return int(batch[0].numel())

    def flops_per_item(self) -> float:
        seq_len = getattr(getattr(self.trainer, "datamodule", None), "seq_len", None)
        return float(self.model.flops_per_token(seq_len))

    def _words(self, split: str, metric: NLLSum) -> int | None:
        """The split's word count for word-normalised perplexity, or None: without one (non-WikiText sources),
        or when the evaluation did not score the whole split (`limit_test_batches`, `fast_dev_run`: the words of
        the whole file over the NLL of part of it would be meaningless; a warning says so)."""
        dm = getattr(self.trainer, "datamodule", None)
        try:
            words = int(dm.words(split)) if dm is not None and hasattr(dm, "words") else None
            expected = int(dm.scored_tokens(split)) if words is not None else None
        except Exception:  # noqa: BLE001 - word counts are optional (non-WikiText sources)
            return None
        if words is None:
            return None
        with metric.sync_context():
            scored = int(metric.count)
        if scored != expected:
            rank_zero_warn(f"{split}/word_ppl not logged: {scored} of the split's {expected} targets were scored "
                           f"(limit_{split}_batches / fast_dev_run?); word perplexity needs the whole split")
            return None
        return words

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        _, loss = self.model(x, y)
        self._recent_train.append(loss.detach())
        # sync_dist: under DDP the logged curve is the global batch's loss (one scalar all-reduce per step)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, sync_dist=True)
        return loss

    def _eval_step(self, batch, metric: NLLSum, band_metrics=None) -> None:
        x, y, mask = batch
        metric.update(self.model(x), y, mask)
        for i, band_metric in enumerate(band_metrics or []):
            band_metric.update(self.model(x, ablate_band=i), y, mask)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_nll, self.band_nll)

    def on_test_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        unigram = dm.unigram_log_probs() if dm is not None and hasattr(dm, "unigram_log_probs") else None
        self._unigram = None if unigram is None else unigram.to(self.device)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_nll)
        if self._unigram is not None:
            _, y, mask = batch
            m = mask.to(torch.float64)
            self.test_unigram_nll.update_sums(-(self._unigram[y] * m).sum(), mask.sum())

    def _log_split(self, prefix: str, metric: NLLSum, words: int | None) -> dict[str, torch.Tensor]:
        values = metric.perplexities(words)
        out = {f"{prefix}/loss": values["loss"], f"{prefix}/ppl": values["ppl"]}
        if words and prefix == "test":
            out["test/word_ppl"] = values["word_ppl"]
        metric.reset()
        return out

    def on_validation_epoch_end(self) -> None:
        out = self._log_split("val", self.val_nll, None)
        if self._recent_train:
            recent = self.trainer.strategy.reduce(torch.stack(list(self._recent_train)).mean(), reduce_op="mean")
            out["val/gap"] = out["val/loss"] - recent
        for i, band_metric in enumerate(self.band_nll):
            out[f"band/{i}/delta_loss"] = band_metric.compute() - out["val/loss"]
            band_metric.reset()
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in out.items()}, prog_bar=False)

    def on_test_epoch_end(self) -> None:
        words = self._words("test", self.test_nll)
        out = self._log_split("test", self.test_nll, words)
        if self._unigram is not None:
            base = self._log_split("test", self.test_unigram_nll, words)
            out.update({f"{k}_unigram": v for k, v in base.items()})
        self.log_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in out.items()})

    # ------------------------------------------------------------------ per-band dynamics
    def _band_groups(self, optimizer) -> dict[str, list[torch.Tensor]]:
        groups: dict[str, list[torch.Tensor]] = {}
        for g in optimizer.param_groups:
            groups.setdefault(g.get("base", g.get("name", "shared")), []).extend(g["params"])
        return groups

    @staticmethod
    def _stat_key(group: str) -> str:
        """`band_3` -> `band/3`; other groups keep their name (`shared`)."""
        return group.replace("band_", "band/", 1) if group.startswith("band_") else group

    def _stats_step(self) -> bool:
        n = self.band_stats_every_n_steps
        return n > 0 and (self.global_step + 1) % n == 0

    def on_before_optimizer_step(self, optimizer) -> None:
        if not self._stats_step():
            return
        norms = group_norms(optimizer.param_groups, "grad")  # per base group, one host sync
        self._grad_norms = {f"{self._stat_key(name)}/grad_norm": float(v) for name, v in norms.items()}
        for name, params in self._band_groups(optimizer).items():
            self._weights_before[name] = [p.detach().clone() for p in params]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if not self._weights_before:
            return
        stats = {}
        for name, params in self._band_groups(self.optimizers().optimizer).items():
            before = self._weights_before.get(name)
            if not before:
                continue
            delta = torch.stack([(p.detach().float() - b.float()).norm() for p, b in zip(params, before)]).norm()
            weight = torch.stack([b.float().norm() for b in before]).norm()
            stats[f"{self._stat_key(name)}/update_ratio"] = float(delta / weight.clamp_min(1e-12))
        self._weights_before = {}
        stats.update(self._grad_norms)
        # straight to the loggers, once: through self.log an on-step value of an endless epoch is written again,
        # stale, at every later logging step until the next measurement (and the dynamics analysis reads them)
        for logger in self.loggers:
            logger.log_metrics(stats, step=self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Make the checkpoint self-describing: the model's config (for analysis / loading without Hydra)."""
        config = getattr(self.model, "config", None)
        if dataclasses.is_dataclass(config):
            checkpoint["model_config"] = dataclasses.asdict(config)
            checkpoint["model_class"] = f"{type(self.model).__module__}.{type(self.model).__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        resume_schedule(checkpoint, self.optim, self.total_steps)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.model, self.optim, self.total_steps)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
