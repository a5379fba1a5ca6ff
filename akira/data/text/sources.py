"""Corpus files: WikiText (hub download or a local directory) and arbitrary plain-text files.

A corpus is one text file per split (`train`, `valid`, `test`). Files are never loaded whole: they are
scanned line by line for document boundaries and read back in byte ranges by the tokenizing workers.

**Documents.** A WikiText article starts at a level-1 heading line ` = Title = ` that follows a blank
line (or the start of the file) and is followed by a blank line; section headings ` = = Sub = = ` and
math lines like ` = 1 <unk> / s = ` inside an article are not boundaries. A document runs from its
heading to the line before the next heading; whitespace-only lines before the first heading belong to
the first document, so the documents concatenated are exactly the file. A file without headings is
one document (cut at line boundaries every `max_unit_bytes` for bounded memory).

**WikiText words.** `count_words(text)` = number of whitespace-separated tokens (`str.split()`) plus
one per line (the `<eos>` of each line end, blank lines included; a last line without a newline counts
too). On the `tokens` variant this is the standard WikiText count used for word-level perplexity
(WikiText-2/103 valid 217,646, test 245,569). On the `raw` variant it is the same rule applied to the
raw text, which is *not* the literature's normaliser (raw keeps `2-3` as one word where tokens has
`2 @-@ 3`): use the `tokens` variant for word-level perplexities comparable with papers.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
WIKITEXT = ("wikitext-103", "wikitext-2")
SOURCES = (*WIKITEXT, "text")
VARIANTS = ("tokens", "raw")


def normalize_split(split: str) -> str:
    """Map `val`/`validation` to `valid`; raise for anything else than train/valid/test."""
    try:
        return SPLIT_ALIASES[split]
    except KeyError:
        raise ValueError(f"split={split!r}: expected one of {SPLITS} (or 'val'/'validation')") from None


def wikitext_filename(split: str, variant: str) -> str:
    """`wiki.<split>.<variant>`, the standard WikiText file name."""
    return f"wiki.{normalize_split(split)}.{variant}"


@dataclass(frozen=True)
class CorpusFiles:
    """Where each split's text lives. `keys[split]` names the config key for error messages."""

    name: str  # "wikitext-103", "wikitext-2" or "text"
    variant: str  # "tokens", "raw" or "text"
    paths: dict[str, Path | None]
    keys: dict[str, str] = field(default_factory=dict)

    def has(self, split: str) -> bool:
        return self.paths.get(normalize_split(split)) is not None

    def path(self, split: str) -> Path:
        """Path of `split`, checked to exist and be non-empty (FileNotFoundError/ValueError otherwise)."""
        split = normalize_split(split)
        key = self.keys.get(split, f"data.{split}_path")
        p = self.paths.get(split)
        if p is None:
            raise ValueError(f"{key} is not set: split {split!r} of corpus {self.name!r} needs a text file")
        return check_text_file(p, key)


def check_text_file(path: str | os.PathLike, key: str) -> Path:
    """Return `path` as a Path if it is a non-empty regular file; else one clear error naming `key`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{key}={p}: file not found (expected a UTF-8 text file)")
    if not p.is_file():
        raise ValueError(f"{key}={p}: not a regular file (expected a UTF-8 text file)")
    if p.stat().st_size == 0:
        raise ValueError(f"{key}={p}: file is empty (expected UTF-8 text)")
    return p


def local_wikitext(local_dir: str | os.PathLike, variant: str, name: str = "wikitext") -> CorpusFiles:
    """A directory in the standard layout `wiki.{train,valid,test}.{variant}`; all three must exist."""
    d = Path(local_dir).expanduser()
    expected = [wikitext_filename(s, variant) for s in SPLITS]
    if not d.is_dir():
        raise FileNotFoundError(f"data.local_dir={d}: not a directory (expected one holding {', '.join(expected)})")
    missing = [f for f in expected if not (d / f).is_file()]
    if missing:
        found = sorted(os.listdir(d))[:6]
        raise FileNotFoundError(
            f"data.local_dir={d}: missing {', '.join(missing)} (variant {variant!r} expects "
            f"{', '.join(expected)}; found {found}); unset data.local_dir to download the corpus into data.data_dir "
            f"(data.download=true), or for other text files use data=text_local with data.train_path/valid_path/test_path"
        )
    paths = {s: d / wikitext_filename(s, variant) for s in SPLITS}
    return CorpusFiles(name, variant, paths, {s: f"data.local_dir ({wikitext_filename(s, variant)})" for s in SPLITS})


def text_files(train: str | None, valid: str | None, test: str | None) -> CorpusFiles:
    """Arbitrary plain-text files, one per split (any may be None until that split is used)."""
    paths = {s: (Path(p).expanduser() if p else None) for s, p in zip(SPLITS, (train, valid, test))}
    if all(p is None for p in paths.values()):
        raise ValueError("data.source=text needs at least one of data.train_path, data.valid_path, data.test_path")
    return CorpusFiles("text", "text", paths, {s: f"data.{s}_path" for s in SPLITS})


# ---------------------------------------------------------------------------------------------------
# document scanning


def is_heading(line: bytes) -> bool:
    """True for a level-1 WikiText heading line (` = Title = `), False for ` = = Sub = = ` and text."""
    s = line.strip()
    return len(s) >= 3 and s.startswith(b"= ") and s.endswith(b" =") and not s.startswith(b"= =")


def scan_units(path: str | os.PathLike, max_unit_bytes: int = 8 << 20) -> tuple[list[tuple[int, bool]], int]:
    """Stream `path` once and return `(units, size)`.

    `units` is a sorted list of `(byte_offset, is_document_start)`: the start of every document (see the
    module docstring) plus extra cuts at line boundaries inside documents longer than `max_unit_bytes`.
    Unit `i` spans `[units[i][0], units[i+1][0])` (the last one ends at `size`).
    """
    starts: list[tuple[int, bool]] = [(0, True)]
    offset = 0
    unit_start = 0
    prev_blank = True  # the start of the file counts as preceded by a blank line
    seen_text = False  # any non-blank line so far (a whitespace-only preamble joins the first document)
    candidate: int | None = None  # a heading line waiting for the blank line that must follow it
    with open(path, "rb") as f:
        for line in f:
            blank = not line.strip()
            if candidate is not None:
                if blank and candidate > 0 and seen_text:
                    starts.append((candidate, True))
                seen_text = True
                candidate = None
            if offset - unit_start >= max_unit_bytes:
                starts.append((offset, False))
                unit_start = offset
            if prev_blank and not blank and is_heading(line):
                candidate = offset
            elif not blank:
                seen_text = True
            prev_blank = blank
            offset += len(line)
    if candidate is not None and candidate > 0 and seen_text:  # heading on the last line
        starts.append((candidate, True))
    starts.sort()
    units: list[tuple[int, bool]] = []
    for off, is_doc in starts:  # a document start wins over a length cut at the same offset
        if units and units[-1][0] == off:
            units[-1] = (off, units[-1][1] or is_doc)
        else:
            units.append((off, is_doc))
    return units, offset


def iter_documents(path: str | os.PathLike, max_unit_bytes: int = 8 << 20) -> Iterator[str]:
    """Yield the documents of `path` one at a time (decoded UTF-8), streaming the file."""
    units, size = scan_units(path, max_unit_bytes)
    doc_bounds = [off for off, is_doc in units if is_doc] + [size]
    with open(path, "rb") as f:
        for a, b in zip(doc_bounds[:-1], doc_bounds[1:]):
            f.seek(a)
            yield decode_utf8(f.read(b - a), path, a)


def decode_utf8(data: bytes, path: str | os.PathLike, offset: int = 0) -> str:
    """Decode UTF-8 or raise one clear line naming the file and byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 at byte {offset + e.start} (expected UTF-8 text)") from None


def count_words(text: str) -> int:
    """WikiText word count: whitespace-separated tokens plus one `<eos>` per line (see module doc)."""
    if not text:
        return 0
    lines = text.split("\n")  # per-line splits keep the temporary lists small
    n_lines = len(lines) - (1 if text.endswith("\n") else 0)
    return sum(len(line.split()) for line in lines) + n_lines
