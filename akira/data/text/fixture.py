"""A small synthetic corpus in WikiText's `tokens` format, for tests and smoke runs (no files needed).

`wikitext_like(n_articles, seed)` returns text laid out like `wiki.*.tokens`: a blank first line, then
per article ` = Title = `, sections ` = = Section = = ` and ` = = = Sub = = = `, paragraphs with `@-@`,
`@,@`, `<unk>` and non-ASCII words, blank lines ` ` between blocks, and a math-like line
` = 1 <unk> / s = ` inside a paragraph (not an article boundary: no blank line before it).
"""
from __future__ import annotations

import random

WORDS = ("the", "a", "of", "lobster", "species", "<unk>", "is", "in", ",", ".", "(", ")", "1", "@-@", "2",
         "@,@", "000", "Homarus", "Zürich", "café", "–", "\"", "was", "and", "to", "river", "war", "song")


def _paragraph(rng: random.Random, lo: int = 4, hi: int = 40) -> str:
    return " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + " \n"


def wikitext_like(n_articles: int = 5, seed: int = 0, sections: int = 2, paragraphs: int = 3) -> str:
    """WikiText-format text with exactly `n_articles` level-1 articles (see module doc)."""
    rng = random.Random(seed)
    lines = [" \n"]
    for a in range(n_articles):
        lines += [f" = Article {a} <unk> @-@ {rng.randint(0, 99)} = \n", " \n"]
        lines += [_paragraph(rng) for _ in range(paragraphs)]
        lines.append(" \n")
        for s in range(sections):
            lines += [f" = = Section {s} = = \n", " \n"]
            lines += [_paragraph(rng) for _ in range(paragraphs)]
            if s == 0:
                lines += [" = 1 <unk> / s = \n", _paragraph(rng)]
            lines += [" \n", f" = = = Sub {s} = = = \n", " \n", _paragraph(rng), " \n"]
    return "".join(lines)
