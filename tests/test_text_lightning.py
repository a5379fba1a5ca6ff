"""TextDataModule under a Lightning Trainer: fit, validate, checkpoint the data position, resume exactly."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from akira.data.text.datamodule import TextDataModule
from akira.data.text.fixture import wikitext_like
from akira.data.text.metrics import NLLSum


class TinyLM(pl.LightningModule):
    """A bigram table LM that records the training batches it sees."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        self.seen: list[torch.Tensor] = []
        self.val_nll = NLLSum()

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.append(x.clone())
        return F.cross_entropy(self.table(x).flatten(0, 1), y.flatten())

    def validation_step(self, batch, batch_idx):
        x, y, mask = batch
        self.val_nll.update(self.table(x), y, mask)

    def on_validation_epoch_end(self):
        dm = self.trainer.datamodule
        out = self.val_nll.perplexities(dm.words("valid"))
        self.log("val/ppl", out["ppl"])
        self.log("val/word_ppl", out["word_ppl"])
        self.val_nll.reset()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(max_steps, tmp_path):
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      val_check_interval=3, check_val_every_n_epoch=None, default_root_dir=str(tmp_path))


def test_fit_checkpoint_and_exact_resume(tmp_path):
    (tmp_path / "train.txt").write_text(wikitext_like(8, seed=0), encoding="utf-8")
    (tmp_path / "valid.txt").write_text(wikitext_like(2, seed=1), encoding="utf-8")

    def make():
        return TextDataModule(source="text", train_path=str(tmp_path / "train.txt"), valid_path=str(tmp_path / "valid.txt"),
                              data_dir=str(tmp_path / "d"), tokenizer="byte", seq_len=16, batch_size=4,
                              sampling="chunks", seed=3, num_proc=1)

    dm, model = make(), TinyLM(257)
    trainer = _trainer(3, tmp_path)
    trainer.fit(model, dm)
    assert dm.train_step == 3 and len(model.seen) == 3
    assert "val/ppl" in trainer.callback_metrics and trainer.callback_metrics["val/word_ppl"] > 1
    ckpt = tmp_path / "step3.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=False)["TextDataModule"]["train_step"] == 3

    reference = make()
    reference.setup("fit")
    ds = reference.train_dataset()
    for step, x in enumerate(model.seen):
        assert torch.equal(x, ds.batch(step)[0])

    dm2, model2 = make(), TinyLM(257)
    _trainer(5, tmp_path).fit(model2, dm2, ckpt_path=str(ckpt))
    assert dm2.train_step == 5 and len(model2.seen) == 2
    for step, x in zip((3, 4), model2.seen):  # continues exactly where the checkpoint stopped
        assert torch.equal(x, ds.batch(step)[0])
