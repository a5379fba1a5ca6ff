"""Download WikiText from the Hugging Face hub (parquet) or its original zip mirror, as `wiki.*` files.

`download_wikitext(name, variant, dest)` writes `dest/wiki.{train,valid,test}.{variant}` in the original
line format (one line per row; blank rows become ` \\n`, the original blank lines). It tries, in order:
1. the hub dataset `Salesforce/wikitext` (`<config>/<split>-*.parquet`), through `huggingface_hub` when
   importable else plain HTTPS; reading parquet needs `pyarrow`;
2. the original zip `https://wikitext.smerity.com/<config>.zip` (standard library only).
Offline (`allow_download=False`, or `HF_HUB_OFFLINE=1`) or when both fail it raises one
FileNotFoundError line saying where it looked, what to download and how to set `data.local_dir`.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from akira.atomic import atomic_open

from .sources import SPLITS, wikitext_filename

HUB_REPO = "Salesforce/wikitext"
ZIP_MIRROR = "https://wikitext.smerity.com"
HUB_SPLIT = {"train": "train", "valid": "validation", "test": "test"}
CONFIGS = {
    ("wikitext-103", "tokens"): "wikitext-103-v1",
    ("wikitext-103", "raw"): "wikitext-103-raw-v1",
    ("wikitext-2", "tokens"): "wikitext-2-v1",
    ("wikitext-2", "raw"): "wikitext-2-raw-v1",
}
ZIP_DIRS = {"wikitext-103-v1": "wikitext-103", "wikitext-103-raw-v1": "wikitext-103-raw",
            "wikitext-2-v1": "wikitext-2", "wikitext-2-raw-v1": "wikitext-2-raw"}
TIMEOUT_S = 60


def hub_config(name: str, variant: str) -> str:
    try:
        return CONFIGS[(name, variant)]
    except KeyError:
        raise ValueError(f"data.source={name!r}, data.variant={variant!r}: expected one of {sorted(CONFIGS)}") from None


def brief_error(exc: BaseException, limit: int = 120) -> str:
    """``Type: first line of the message`` cut at a word boundary (network errors carry very long reprs)."""
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def have_files(dest: str | os.PathLike, variant: str) -> bool:
    d = Path(dest)
    return all((d / wikitext_filename(s, variant)).is_file() for s in SPLITS)


def offline_message(name: str, variant: str, dest: Path, why: str) -> str:
    config = hub_config(name, variant)
    files = ", ".join(wikitext_filename(s, variant) for s in SPLITS)
    return (
        f"data.source={name} (variant {variant}): no {files} in {dest} and {why}; download "
        f"https://huggingface.co/datasets/{HUB_REPO} ({config}/*.parquet) or {ZIP_MIRROR}/{config}.zip "
        f"and set data.local_dir to a directory holding {files}"
    )


def download_wikitext(name: str, variant: str, dest: str | os.PathLike, allow_download: bool = True) -> Path:
    """Make `dest/wiki.{split}.{variant}` exist (download if needed); return `dest`."""
    dest = Path(dest)
    if have_files(dest, variant):
        return dest
    if not allow_download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise FileNotFoundError(offline_message(name, variant, dest, "downloads are off (data.download=false or HF_HUB_OFFLINE)"))
    config = hub_config(name, variant)
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for fetch in (_from_hub_parquet, _from_zip_mirror):
        try:
            fetch(config, variant, dest)
            if have_files(dest, variant):
                return dest
        except Exception as e:  # noqa: BLE001 - collected into one message below
            errors.append(f"{fetch.__name__.strip('_')}: {brief_error(e)}")
    raise FileNotFoundError(offline_message(name, variant, dest, "the download failed (" + "; ".join(errors) + ")"))


def _from_hub_parquet(config: str, variant: str, dest: Path) -> None:
    import pyarrow.parquet as pq  # optional dependency: only this path needs it

    for split in SPLITS:
        files = _hub_parquet_files(config, HUB_SPLIT[split])
        if not files:
            raise FileNotFoundError(f"no {config}/{HUB_SPLIT[split]}-*.parquet in {HUB_REPO}")
        with atomic_open(dest / wikitext_filename(split, variant), "w", encoding="utf-8", newline="") as f:
            for fname in files:
                table = pq.ParquetFile(_hub_download(fname, dest / ".hub"))
                for batch in table.iter_batches(columns=["text"], batch_size=65536):
                    for row in batch.column(0).to_pylist():
                        row = row or " \n"  # the hub stores the original blank lines ' ' as ''
                        f.write(row if row.endswith("\n") else row + "\n")
    shutil.rmtree(dest / ".hub", ignore_errors=True)


def _hub_parquet_files(config: str, hub_split: str) -> list[str]:
    prefix = f"{config}/{hub_split}-"
    try:
        from huggingface_hub import HfApi

        names = HfApi().list_repo_files(HUB_REPO, repo_type="dataset")
    except ImportError:
        n = 2 if config.startswith("wikitext-103") and hub_split == "train" else 1  # layout of 2024-12
        names = [f"{prefix}{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    return sorted(n for n in names if n.startswith(prefix) and n.endswith(".parquet"))


def _hub_download(filename: str, cache: Path) -> str:
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(HUB_REPO, filename, repo_type="dataset", cache_dir=str(cache))
    except ImportError:
        url = f"https://huggingface.co/datasets/{HUB_REPO}/resolve/main/{filename}"
        out = cache / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(out, "wb") as f:
            shutil.copyfileobj(r, f)
        return str(out)


def _from_zip_mirror(config: str, variant: str, dest: Path) -> None:
    url = f"{ZIP_MIRROR}/{config}.zip"
    zpath = dest / f"{config}.zip"
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=zpath.name + ".tmp-")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(r, f)
        with zipfile.ZipFile(tmp) as z:
            for split in SPLITS:
                member = f"{ZIP_DIRS[config]}/{wikitext_filename(split, variant)}"
                out = dest / wikitext_filename(split, variant)
                with z.open(member) as src, atomic_open(out, "w", encoding="utf-8", newline="") as w:
                    shutil.copyfileobj(io.TextIOWrapper(src, encoding="utf-8", newline=""), w)
    finally:
        Path(tmp).unlink(missing_ok=True)
