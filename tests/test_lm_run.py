"""Language-model runs end to end (tiny sizes, byte tokenizer, generated WikiText-format text)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from akira.cli import ROOT
from akira.data.text.fixture import wikitext_like
from akira.run import train
from tests.conftest import compose_config

ARMS = ["lm_baseline", "ablation_band_only", "ablation_difflr_only", "ablation_no_wormhole", "ablation_full",
        "ablation_band_only_matched", "ablation_no_wormhole_matched", "ablation_full_matched"]
TINY_MODEL = ["model.n_layer=2", "model.d_model=64", "model.n_head=4", "model.max_seq_len=32",
              "model.dropout=0.0", "model.band_widths=[16,12,10,8,8,6,4]"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for split, seed, n in (("train", 0, 6), ("valid", 1, 2), ("test", 2, 2)):
        (root / f"{split}.txt").write_text(wikitext_like(n_articles=n, seed=seed))
    return root


def _data(corpus, cache) -> list[str]:
    return ["data=text_local", f"data.train_path={corpus}/train.txt", f"data.valid_path={corpus}/valid.txt",
            f"data.test_path={corpus}/test.txt", "data.tokenizer=byte", "data.seq_len=32", "data.batch_size=4",
            f"data.cache_dir={cache}", "data.num_proc=1"]


RUN = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1",
       "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
       "callbacks.progress_bar=null", "task.band_stats_every_n_steps=2", "optim.warmup_steps=1"]


@pytest.mark.parametrize("arm", ["lm_baseline", "ablation_difflr_only", "ablation_band_only", "ablation_full_matched"])
def test_arms_train_and_report(tmp_path, corpus, arm):
    cfg = compose_config([f"experiment={arm}", *_data(corpus, tmp_path / "cache"), *TINY_MODEL, *RUN],
                         run_dir=tmp_path / "run")
    metrics = train(cfg)
    for key in ("val/loss", "val/ppl", "test/loss", "test/ppl", "test/word_ppl", "params_total",
                "params_non_embedding", "throughput/tokens_per_sec"):
        assert key in metrics, key
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    groups = run["params"]["groups"]
    assert sum(groups.values()) == run["params"]["trainable"]
    banded = arm != "lm_baseline"
    assert any(g.startswith("band_") for g in groups) == banded
    members = run["params"]["group_members"]
    assert set(members) == set(groups) and all(members.values())
    if banded:
        assert any("band" in name or "mlp" in name for name in members["band_0"])
    if arm in ("ablation_no_wormhole", "ablation_full", "ablation_band_only"):
        assert "band/0/delta_loss" in metrics and "band/6/delta_loss" in metrics
    csv_text = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "lr/shared" in csv_text
    if arm == "lm_baseline":  # the unigram baseline beside the model: training frequencies on the test targets
        import numpy as np

        from akira.data.text.metrics import unigram_log_probs
        from akira.run import build_datamodule

        dm = build_datamodule(cfg)
        logp = unigram_log_probs(dm.cache("train").tokens, dm.vocab_size).numpy()
        test = np.asarray(dm.cache("test").tokens, dtype=np.int64)[1:]  # every token after the first is scored
        assert metrics["test/loss_unigram"] == pytest.approx(-logp[test].mean(), rel=1e-6)
        assert metrics["test/ppl_unigram"] == pytest.approx(np.exp(-logp[test].mean()), rel=1e-6)
        assert metrics["test/word_ppl_unigram"] == pytest.approx(np.exp(-logp[test].sum() / dm.words("test")),
                                                                 rel=1e-6)
    if banded:
        assert "lr/band_0" in csv_text and "band/0/grad_norm" in csv_text and "band/0/update_ratio" in csv_text
        # measured every 2 of the 4 steps, and each measurement written once (not again, stale, at every step)
        import csv

        rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
        for key in ("band/0/grad_norm", "band/0/update_ratio"):
            assert [r["step"] for r in rows if r.get(key)] == ["2", "4"], key


def test_word_ppl_only_over_the_whole_test_split(tmp_path, corpus):
    """Part of the test split scored (limit_test_batches): the whole file's word count over part of its NLL would
    be a wrong number, so test/word_ppl is left out (with a warning); token perplexity is still logged."""
    cfg = compose_config(["experiment=lm_baseline", *_data(corpus, tmp_path / "cache"), *TINY_MODEL, *RUN,
                          "trainer.limit_test_batches=1"], run_dir=tmp_path / "run")
    with pytest.warns(UserWarning, match="test/word_ppl not logged"):
        metrics = train(cfg)
    assert "test/ppl" in metrics and "test/ppl_unigram" in metrics
    assert "test/word_ppl" not in metrics and "test/word_ppl_unigram" not in metrics


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_builds_the_intended_model(compose, arm):
    from akira.models.lm import Transformer

    cfg = compose([f"experiment={arm}", *TINY_MODEL, "model.vocab_size=256"])
    kwargs = {k: v for k, v in cfg.model.items() if k not in ("_target_", "kind", "compile", "vocab_pad_multiple")}
    model = Transformer(**kwargs)
    assert model.config.mlp == {"lm_baseline": "dense", "ablation_difflr_only": "dense_split"}.get(arm, "band")
    assert model.config.wormhole == ("full" in arm)
    assert model.config.params_matched == arm.endswith("_matched")
    assert cfg.optim.band_lrs == (None if arm == "lm_baseline" else "uniform" if "band_only" in arm else "v1")


def test_mission_command_lines_compose(compose):
    a = compose(["model=akira_band", "experiment=ablation_no_wormhole"])
    b = compose(["experiment=ablation_no_wormhole"])
    assert a.model == b.model and a.model.mlp == "band" and a.model.wormhole is False
    assert b.optim.band_lrs == "v1"


def test_optim_lr_sets_the_shared_lr_of_the_lm_experiments(compose):
    """`optim.lr` is the shared group's peak LR in every arm (lm_common used to pin optim.shared_lr, so an
    `optim.lr=...` override did nothing); an explicit `optim.shared_lr`, also 0, wins."""
    from omegaconf import OmegaConf

    from akira.tasks.configure import configure_optimizers

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    for args, want in ((["optim.lr=1e-3"], 1e-3), (["optim.lr=1e-3", "optim.shared_lr=2e-4"], 2e-4),
                       (["optim.shared_lr=0"], 0.0), ([], 3e-4)):
        optim = OmegaConf.to_container(compose(["experiment=lm_baseline", *args]).optim, resolve=True)
        groups = configure_optimizers(model, optim, 1000)["optimizer"].param_groups
        assert {g["peak_lr"] for g in groups} == {want}, args


@pytest.mark.parametrize("args,key", [
    (["experiment=ablation_no_wormhole", "model=baseline"], "needs model=akira_band"),
    (["experiment=ablation_full", "model.band_widths=[128,96,80,64,64,48,16]"], "model.band_widths"),
    (["experiment=ablation_full", "optim.band_lrs=[1e-4,1e-4]"], "optim.band_lrs"),
    (["experiment=lm_baseline", "model.n_head=7"], "model.n_head"),
    (["experiment=lm_baseline", "data.seq_len=1024", "model.max_seq_len=512"], "data.seq_len"),
    (["experiment=lm_baseline", "trainer.max_steps=100"], "optim.warmup_steps"),   # lm_common warms up 500
])
def test_lm_bad_input_fails_at_build_time_naming_the_key(tmp_path, corpus, args, key):
    from akira.config import ConfigError

    data = _data(corpus, tmp_path / "c")
    if "data.seq_len=1024" in args:
        data = [d for d in data if not d.startswith("data.seq_len")]
    cfg = compose_config([*data, *args], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert key in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arg,key", [("model.wormhole_gate=cuda", "model.wormhole_gate"),
                                     ("model.band_widths=[128,96,80,64,64,48,16]", "model.band_widths"),
                                     ("model.n_head=7", "model.n_head")])
def test_lm_model_values_fail_at_compose_time_before_the_data_is_read(tmp_path, arg, key):
    """The LM's value checks run in validate_config: a bad value is reported, not the missing data behind it."""
    from akira.config import ConfigError
    from akira.config.validate import validate_config

    cfg = compose_config(["experiment=ablation_full", "data=wikitext2", f"data.local_dir={tmp_path}/nope", arg],
                         run_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, model_choice="akira_band")
    assert key in str(info.value) and "\n" not in str(info.value)


def test_missing_data_says_where_it_looked(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=lm_baseline", "data=wikitext2",
                           f"data.local_dir={tmp_path}/nope", "data.tokenizer=byte", f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "nope" in last, last


@pytest.mark.slow
def test_compiled_model_checkpoint_round_trip(tmp_path, corpus):
    """`model.compile=true` trains; its checkpoint has plain keys and evaluates with an uncompiled model."""
    import torch

    from akira.run import evaluate

    common = [*_data(corpus, tmp_path / "cache"), *TINY_MODEL, "experiment=lm_baseline", "model.n_layer=1",
              "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
              "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "optim.warmup_steps=1"]
    train(compose_config([*common, "model.compile=true", "callbacks.progress_bar=null"], run_dir=tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    keys = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"].keys()
    assert keys and not any("_orig_mod" in k for k in keys)
    metrics = evaluate(compose_config([*common, "model.compile=false", f"ckpt_path={ckpt}"], config_name="eval",
                                      run_dir=tmp_path / "eval"))
    assert "test/ppl" in metrics


def test_fused_loss_run_trains_and_evaluates(tmp_path, corpus):
    """model.fused_loss=true through the task: training uses the chunked loss, evaluation the logits."""
    cfg = compose_config(["experiment=ablation_full", *_data(corpus, tmp_path / "cache"), *TINY_MODEL, *RUN,
                          "model.fused_loss=true", "model.fused_loss_chunk=24"], run_dir=tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test/ppl"] > 1 and metrics["val/loss"] > 0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/loss")
    assert sum(1 for r in rows[1:] if r.split(",")[column]) == 4  # a training loss at every step
