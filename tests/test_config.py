"""The config tree composes for every group option, and bad input fails at compose time naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError, ValidationError

from akira.cli import CONF_DIR, ROOT
from akira.config import format_error

GROUPS = ["data", "model", "trainer", "logger", "callbacks", "debug", "experiment", "paths"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in GROUPS:
        assert _options(group), f"conf/{group}/ is empty"


@pytest.mark.parametrize("config_name", ["train", "eval"])
def test_defaults_compose(compose, config_name):
    overrides = ["ckpt_path=x.ckpt"] if config_name == "eval" else []
    cfg = compose(overrides, config_name=config_name)
    assert cfg.data.kind == cfg.model.kind
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes(compose, group, option):
    cfg = compose([f"{group}={option}"])
    assert cfg.model is not None and cfg.data is not None
    if group == "model":
        assert "_target_" in cfg.model


@pytest.mark.parametrize("override,exc,key", [
    (["data.grid=abc"], ValidationError, "data.grid"),
    (["trainer.max_steps=1.5"], ValidationError, "trainer.max_steps"),
    (["data.gridd=3"], ConfigKeyError, "data.gridd"),
    (["seedd=1"], ConfigKeyError, "seedd"),
    (["data.pattern=blobby"], ValidationError, "data.pattern"),
    (["model.hidden=x"], ValidationError, "model.hidden"),
])
def test_bad_values_fail_at_compose_time(compose, override, exc, key):
    with pytest.raises((ConfigCompositionException, exc)) as info:
        compose(override)
    line = format_error(info.value)
    assert key in line and "\n" not in line


def test_unknown_option_lists_allowed_values(compose):
    with pytest.raises(MissingConfigException) as info:
        compose(["model=nope"])
    line = format_error(info.value)
    assert "model/nope" in line and "convlstm" in line and "mlp2d" in line and "\n" not in line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["model=nope", "--cfg", "job"], "allowed values for 'model'"),
    (["experiment=nope", "--cfg", "job"], "fields_blob"),
    (["data.grid=abc", "--cfg", "job"], "data.grid"),
    (["data.typo=1", "--cfg", "job"], "data.typo: unknown key"),
    (["logger.wandb.project=x", "--cfg", "job"], "logger.wandb.project"),
])
def test_cli_config_errors_exit_2_with_one_line(args, needle):
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and lines[0].startswith("akira: config error:")


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_compose_time_error_comes_before_torch_and_lightning_are_imported(script):
    """train.py / eval.py import the run code (torch, Lightning: seconds) only inside the task, after Hydra has
    composed and type-checked the config, so a typo is reported at once (was: after importing them)."""
    probe = ("import atexit, runpy, sys; atexit.register(lambda: print('heavy imports:', sorted({'torch', "
             "'pytorch_lightning'} & set(sys.modules)), file=sys.stderr)); "
             f"sys.argv = [{script!r}, 'data.typo=1']; runpy.run_path({script!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2].startswith("akira: config error: data.typo: unknown key"), proc.stderr
    assert lines[-1] == "heavy imports: []"


def test_lm_schema_mirrors_lm_config():
    """conf's `model/` schema for LMs lists LMConfig's fields with the same defaults (kept separate so composing
    a config never imports torch); a field added to one and not the other fails here."""
    import dataclasses

    from akira.config.models import LMModelConfig
    from akira.models.lm import LMConfig

    framework = {"_target_", "kind", "compile", "vocab_pad_multiple"}
    schema = {f.name: f for f in dataclasses.fields(LMModelConfig) if f.name not in framework}
    model = {f.name: f for f in dataclasses.fields(LMConfig)}
    assert schema.keys() == model.keys()

    def default(f):
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    for name in model.keys() - {"vocab_size"}:  # the schema's vocab_size=None means "from the tokenizer"
        ours, theirs = default(schema[name]), default(model[name])
        if name == "band_widths":  # a list in the schema (OmegaConf has no tuples)
            ours, theirs = list(ours), list(theirs)
        assert ours == theirs, name
    assert default(schema["vocab_size"]) is None


def test_a_language_model_with_the_generic_optimizer_is_warned_about(compose, caplog):
    """model=baseline on text data without an LM experiment trains with train.yaml's generic Adam: allowed, but
    the run says where the LM recipe is; with an LM experiment, nothing is said."""
    import logging

    from akira.config.validate import validate_config
    with caplog.at_level(logging.WARNING, logger="akira"):
        validate_config(compose(["model=baseline", "data=wikitext2"]), model_choice="baseline")
    assert "generic optimizer" in caplog.text and "experiment=lm_baseline" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="akira"):
        validate_config(compose(["experiment=lm_baseline"]), model_choice="baseline")
        validate_config(compose(["model=convlstm"]), model_choice="convlstm")       # not a language model
    assert "generic optimizer" not in caplog.text
