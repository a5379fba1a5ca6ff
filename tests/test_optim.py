"""akira.tasks.optim: per-band param groups, LR tables, warmup + cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from akira.models.lm import LMConfig, Transformer, lm_preset
from akira.tasks.optim import (
    V1_BAND_LRS,
    WarmupCosine,
    build_optimizer,
    build_param_groups,
    build_scheduler,
    group_norms,
    param_group_members,
    param_group_summary,
    resolve_band_lrs,
    warmup_cosine_lambda,
)

TINY = {"vocab_size": 64, "n_layer": 2, "d_model": 32, "n_head": 2, "max_seq_len": 16, "dropout": 0.0,
        "band_widths": (8, 6, 5, 4, 4, 3, 2)}
ARMS = {"baseline": {}, "band": {"mlp": "band"}, "wormhole": {"mlp": "band", "wormhole": True},
        "dense_split": {"mlp": "dense_split"},
        "tied_rotary_nobias": {"mlp": "band", "tie_embeddings": True, "positional": "rotary", "bias": False}}


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(LMConfig(**{**TINY, **kw}))


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_parameter_in_exactly_one_group(arm):
    model = tiny(**ARMS[arm])
    groups = build_param_groups(model, lr_table=None if arm != "baseline" else "uniform")
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    summary = param_group_summary(groups)
    assert summary["total"] == model.num_parameters(non_embedding=False)
    members = param_group_members(groups)
    assert sum(len(v) for v in members.values()) == len(ids)
    if arm == "baseline":
        assert set(names) == {"shared", "shared_no_decay"}
    else:
        assert {g["base"] for g in groups} == {f"band_{i}" for i in range(7)} | {"shared"}


def test_group_membership_and_weight_decay():
    model = tiny(mlp="band", wormhole=True)
    groups = {g["name"]: g for g in build_param_groups(model, weight_decay=0.1)}
    band3 = set(groups["band_3"]["param_names"]) | set(groups["band_3_no_decay"]["param_names"])
    assert band3 == {f"blocks.{layer}.{n}" for layer in range(2)
                     for n in ("ln_2.weight.3", "ln_2.bias.3", "mlp.w1.3", "mlp.w2.3", "mlp.b1.3", "mlp.b2.3")}
    assert set(groups["band_3"]["param_names"]) == {"blocks.0.mlp.w1.3", "blocks.0.mlp.w2.3",
                                                    "blocks.1.mlp.w1.3", "blocks.1.mlp.w2.3"}
    shared = set(groups["shared"]["param_names"])
    assert "blocks.0.wormhole.w_qkv" in shared and "lm_head.weight" in shared and "blocks.1.attn.qkv.weight" in shared
    no_decay = set(groups["shared_no_decay"]["param_names"])
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "blocks.0.attn.qkv.bias", "blocks.0.wormhole.b_o"} <= no_decay
    # every bias and norm parameter is undecayed, also a bias stored as a matrix (the wormhole's b_qkv (nb, 4c))
    decayed = {n for g in groups.values() if g["weight_decay"] > 0 for n in g["param_names"]}
    assert "blocks.0.wormhole.b_qkv" in no_decay
    assert not [n for n in decayed
                if any(part == "bias" or part.startswith(("ln", "b_", "b1", "b2")) for part in n.split("."))]
    for g in groups.values():
        assert g["weight_decay"] == (0.0 if g["name"].endswith("_no_decay") else 0.1)
        assert all(p.ndim >= 2 for p in g["params"]) or g["weight_decay"] == 0.0


def test_dense_split_groups_map_hidden_groups_to_bands():
    groups = {g["name"]: g for g in build_param_groups(tiny(mlp="dense_split"))}
    assert set(groups["band_0"]["param_names"]) == {"blocks.0.mlp.fc1_w.0", "blocks.0.mlp.fc2_w.0",
                                                    "blocks.1.mlp.fc1_w.0", "blocks.1.mlp.fc2_w.0"}
    assert groups["band_0"]["params"][0].shape == (32, 32)  # 4 * 32 * 8 / 32 hidden units x d_model
    assert "blocks.0.mlp.fc2_b" in groups["shared_no_decay"]["param_names"]


def test_reference_v1_band_group_sizes():
    """REFERENCE §2.4: band_0..band_6 of the seed v1 model (decay + no-decay halves)."""
    groups = build_param_groups(Transformer(lm_preset("band_wormhole")))
    summary = param_group_summary(groups)
    per_band = [summary[f"band_{i}"] + summary[f"band_{i}_no_decay"] for i in range(7)]
    assert per_band == [791_808, 446_400, 310_560, 199_296, 199_296, 112_608, 50_496]
    assert summary["total"] == 60_972_672


@pytest.mark.parametrize("table,expected", [
    (None, list(V1_BAND_LRS)),
    ("v1", list(V1_BAND_LRS)),
    ("uniform", [3e-4] * 7),
    ([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3], [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3]),
    ({**{f"band_{i}": 1e-4 * (i + 1) for i in range(7)}, "shared": 5e-4}, [1e-4 * (i + 1) for i in range(7)]),
])
def test_lr_after_warmup_equals_table(table, expected):
    model = tiny(mlp="band")
    groups = build_param_groups(model, lr_table=table, shared_lr=3e-4)
    opt = build_optimizer(groups)
    sched = build_scheduler(opt, warmup_steps=10, total_steps=100, min_lr_ratio=0.1)
    assert all(g["lr"] == 0.0 for g in opt.param_groups)  # warmup starts at 0
    for _ in range(10):
        opt.step()
        sched.step()
    shared = table["shared"] if isinstance(table, dict) else 3e-4
    for g in opt.param_groups:
        want = shared if g["band"] is None else expected[g["band"]]
        assert g["lr"] == pytest.approx(want, rel=1e-12)
        assert g["peak_lr"] == pytest.approx(want, rel=1e-12)
    for _ in range(90):
        opt.step()
        sched.step()
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.1 * g["peak_lr"], rel=1e-9)


def test_schedule_values():
    w, total, r = 100, 1100, 0.1
    assert warmup_cosine_lambda(0, w, total, r) == 0.0
    assert warmup_cosine_lambda(50, w, total, r) == pytest.approx(0.5)
    assert warmup_cosine_lambda(w, w, total, r) == pytest.approx(1.0)
    assert warmup_cosine_lambda(600, w, total, r) == pytest.approx(r + (1 - r) * 0.5)
    assert warmup_cosine_lambda(total, w, total, r) == pytest.approx(r)
    assert warmup_cosine_lambda(total + 500, w, total, r) == pytest.approx(r)
    assert warmup_cosine_lambda(0, 0, total, r) == pytest.approx(1.0)
    vals = [warmup_cosine_lambda(s, w, total, r) for s in range(total + 1)]
    assert all(a <= b for a, b in zip(vals[:w], vals[1:w + 1]))
    assert all(a >= b for a, b in zip(vals[w:-1], vals[w + 1:]))


def test_scheduler_state_roundtrip_and_optimizer_state_names():
    model = tiny(mlp="band")
    opt = build_optimizer(build_param_groups(model))
    sched = build_scheduler(opt, 5, 50, 0.2)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(build_param_groups(model))
    sched2 = build_scheduler(opt2, 1, 2, 0.0)
    sched2.load_state_dict(state)
    assert vars(sched2.lr_lambdas[0]) == {"warmup_steps": 5, "total_steps": 50, "min_lr_ratio": 0.2}
    opt2.load_state_dict(opt.state_dict())
    assert [g["name"] for g in opt2.param_groups] == [g["name"] for g in opt.param_groups]
    assert opt.state_dict()["param_groups"][0]["param_names"][0].startswith("blocks.")
    assert opt.defaults["fused"] is False  # CPU


@pytest.mark.parametrize("kw,key", [
    ({"lr_table": [1e-4] * 6}, "optim.band_lrs"),
    ({"lr_table": {"band_0": 1e-4}}, "optim.band_lrs"),
    ({"lr_table": "v2"}, "optim.band_lrs"),
    ({"lr_table": [-1.0] * 7}, "optim.band_lrs"),
    ({"weight_decay": -0.1}, "optim.weight_decay"),
])
def test_bad_tables_raise(kw, key):
    with pytest.raises(ValueError, match=key):
        build_param_groups(tiny(mlp="band"), **kw)


def test_band_table_on_bandless_model_raises():
    with pytest.raises(ValueError, match="optim.band_lrs"):
        build_param_groups(tiny(), lr_table="v1")
    groups = build_param_groups(tiny())  # default: everything shared at shared_lr
    assert {g["lr"] for g in groups} == {3e-4}
    with pytest.raises(ValueError, match="optim.band_lrs"):
        resolve_band_lrs([1e-3] * 3, n_bands=7)


@pytest.mark.parametrize("kw,key", [((10, 5, 0.1), "optim.warmup_steps"), ((0, 0, 0.1), "optim.total_steps"),
                                    ((1, 5, 1.5), "optim.min_lr_ratio")])
def test_bad_schedule_raises(kw, key):
    with pytest.raises(ValueError, match=key):
        WarmupCosine(*kw)


def test_wrapped_model_and_group_norms():
    class Task(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = tiny(mlp="band")

    task = Task()
    groups = build_param_groups(task)
    assert {g["name"] for g in groups} == {g["name"] for g in build_param_groups(task.model)}
    idx = torch.randint(0, 64, (2, 8))
    task.model(idx, idx)[1].backward()
    norms = group_norms(groups, "grad")
    assert set(norms) == {f"band_{i}" for i in range(7)} | {"shared"}
    assert all(v > 0 and math.isfinite(v) for v in norms.values())
    w = group_norms(groups, "weight")
    expect = math.sqrt(sum(float(p.detach().pow(2).sum()) for g in groups if g["base"] == "band_0"
                           for p in g["params"]))
    assert w["band_0"] == pytest.approx(expect, rel=1e-5)


def test_resume_takes_the_runs_schedule_length_not_the_checkpoints():
    """A run extended on resume (trainer.max_steps 4 -> 8) follows the new cosine; the checkpoint's saved
    LambdaLR state used to win and keep the LR at its minimum after step 4."""
    from akira.tasks.configure import configure_optimizers, resume_schedule

    model = torch.nn.Linear(4, 4)
    optim = {"name": "adamw", "lr": 1e-2, "schedule": "cosine", "warmup_steps": 1, "min_lr_ratio": 0.1}
    first = configure_optimizers(model, optim, 4)
    for _ in range(4):
        first["optimizer"].step()
        first["lr_scheduler"]["scheduler"].step()
    checkpoint = {"lr_schedulers": [first["lr_scheduler"]["scheduler"].state_dict()]}
    with pytest.warns(UserWarning, match="instead of the checkpoint's"):
        resume_schedule(checkpoint, optim, 8)
    again = configure_optimizers(model, optim, 8)
    again["lr_scheduler"]["scheduler"].load_state_dict(checkpoint["lr_schedulers"][0])
    fresh = configure_optimizers(model, optim, 8)
    for _ in range(4):
        fresh["optimizer"].step()
        fresh["lr_scheduler"]["scheduler"].step()
    for run in (again, fresh):   # the next step's LR
        run["optimizer"].step()
        run["lr_scheduler"]["scheduler"].step()
    assert again["lr_scheduler"]["scheduler"].get_last_lr() == fresh["lr_scheduler"]["scheduler"].get_last_lr()
    assert again["lr_scheduler"]["scheduler"].get_last_lr()[0] > 0.1 * 1e-2 * 1.5   # not at the minimum
