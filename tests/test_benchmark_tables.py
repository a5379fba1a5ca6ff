"""The quality benchmark's tables (benchmarks/fields_quality.py) from hand-made job results; the SASS counter's
loop finder."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest


def _benchmark(name: str):
    """The module of benchmarks/<name>.py (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quality():
    return _benchmark("fields_quality")


def job(model: str, pattern: str, seed: int, mse: float, copy_last: float = 1.0, linear: float = 0.5,
        group: str = "models") -> dict:
    return {"group": group, "model": model, "pattern": pattern, "seed": seed,
            "metrics": {"test/mse": mse, "test/mse_copy_last": copy_last, "test/mse_linear": linear,
                        "test/rollout_mse_h10": 10 * mse, "test/rollout_mse_h10_copy_last": 10 * copy_last,
                        "test/rollout_mse_h10_linear": 10 * linear}}


def test_paired_table_counts_wins_seed_by_seed_and_gives_the_geometric_mean_ratio(quality):
    results = [job("spectral2d", "blob", 0, 0.1), job("spectral2d", "blob", 1, 0.4),
               job("convlstm", "blob", 0, 0.2), job("convlstm", "blob", 1, 0.2),
               job("no_wormhole", "blob", 0, 0.01, group="ablation")]     # ablations are not rivals
    table = quality.paired_table(results)
    header = next(line for line in table.splitlines() if line.startswith("| pattern"))
    assert header == "| pattern | convlstm | copy_last | linear |"
    row = next(line for line in table.splitlines() if line.startswith("| blob"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells[0] == f"1/2 ({math.sqrt(0.5 * 2.0):.2f})"                 # 0.1/0.2 and 0.4/0.2
    assert cells[1] == f"2/2 ({math.sqrt(0.1 * 0.4):.2f})"                 # copy-last = 1.0 in both seeds
    assert cells[2] == f"2/2 ({math.sqrt(0.2 * 0.8):.2f})"
    assert table.splitlines()[-1] == "| **all** | **1/2** | **2/2** | **2/2** |"


def test_tables_give_mean_and_std_over_seeds(quality):
    results = [job("spectral2d", "chirp", s, v) for s, v in enumerate((1e-3, 2e-3, 3e-3))]
    row = next(line for line in quality.tables(results).splitlines() if line.startswith("| chirp"))
    assert "2.00e-03 ± 1.0e-03" in row


def test_sass_count_takes_the_longest_backward_branch_as_the_main_loop():
    module = _benchmark("band_mlp_sass_count")
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   FADD R2, R2, R3 ;
        /*0020*/               @P0 BRA 0x10 ;
        /*0030*/                   HGMMA.64x32x16.F32.BF16 R88, R116, gdesc[UR4], R88 ;
        /*0040*/                   MUFU.EX2 R5, R5 ;
        /*0050*/               @!P2 FFMA R6, R5, R5, 1 ;
        /*0060*/               @P1 BRA 0x30 ;
        /*0070*/                   EXIT ;
        /*0080*/                   BRA 0x80;
    """
    assert module.loop_opcodes(sass) == ["HGMMA", "MUFU", "FFMA", "BRA"]
