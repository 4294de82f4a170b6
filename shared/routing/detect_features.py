"""Feature extraction for task-type detection, shared by the runtime and the trainer.

Only a bounded window of a text is read: its first ``HEAD_CHARS`` and last ``TAIL_CHARS``
characters, where instructions sit in practice ("Summarise the article: ...",
"... the text refers to which one?"). The cost is bounded however long the prompt is.

A text becomes a set of hashable keys:

* lower-cased words split on white space and common punctuation (``"summarize"``, ``"?"``);
* pairs of adjacent words among the first ``PAIR_TOKENS`` words, as tuples;
* structural features spelled ``"#..."``: the first word, length and digit-count buckets,
  the presence of code and math markers (code fences, ``def``, ``>>>``, ``=``, ``^``),
  non-Latin script, language names and "into <language>".

Everything is a C-level string operation (``lower``, ``replace``, ``split``, ``in``,
``count``) over the window: no regular expressions, no per-character Python loops.
Standard library only: this module is imported on the request path.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from functools import cache

HEAD_CHARS = 320
TAIL_CHARS = 160
PAIR_TOKENS = 32

_DROP = ',.;!()[]{}"*:'
_DIGITS = "0123456789"
# Substrings whose presence is a feature: code, math and layout markers.
_MARKERS: tuple[tuple[str, str], ...] = tuple(
    (s, "#" + s)
    for s in (
        "```", ">>>", "def ", "return ", "import ", "print(", "->", "==", "{", "}", ";",
        "=", "+", "*", "/", "^", "%", "$", "\\", ":", "?", "'", '"', "(", "\n\n", "\n-",
        "\n1.", "\n    ", "___",
    )
)
_STEMS: tuple[tuple[str, str], ...] = tuple(
    # Word stems of task verbs and nouns, so unseen inflections still count.
    (s, "#stem:" + s)
    for s in (
        "translat", "summar", "classif", "categor", "extract", "sentiment", "brainstorm",
        "poem", "story", "essay", "function", "program", "calculat", "prove",
    )
)
_LANGUAGES = frozenset(
    (
        "english german french spanish italian portuguese chinese mandarin cantonese "
        "japanese korean russian arabic hindi bengali urdu dutch swedish norwegian danish "
        "finnish polish czech turkish greek hebrew vietnamese thai indonesian malay "
        "ukrainian romanian hungarian persian farsi swahili latin"
    ).split()
)
_LANG_PREPOSITIONS = ("into", "to", "in", "from")
# Scripts other than Latin; only searched when the window is not plain ASCII, and compiled
# on first use so that importing this module stays cheap.
_NON_LATIN = (
    r"[\u0370-\u03ff\u0400-\u04ff\u0590-\u06ff\u0900-\u0dff\u0e00-\u0e7f"
    r"\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"
)


@cache
def _non_latin_re() -> re.Pattern[str]:
    return re.compile(_NON_LATIN)


def window(text: str) -> str:
    """The part of ``text`` the detector reads: a bounded head and tail."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n...\n" + text[-TAIL_CHARS:]


def _bucket(value: int, edges: tuple[int, ...]) -> int:
    for i, edge in enumerate(edges):
        if value < edge:
            return i
    return len(edges)


def features(text: str, length: int | None = None) -> set[Hashable]:
    """The feature keys of ``text`` (see the module docstring).

    ``length`` is the full length when ``text`` is already a bounded excerpt.
    """
    win = window(text)
    low = win.lower()
    for ch in _DROP:
        low = low.replace(ch, " ")
    toks = low.replace("?", " ? ").split()
    feats: set[Hashable] = set(toks)
    head = toks[:PAIR_TOKENS]
    feats.update(zip(head, head[1:]))
    if toks:
        feats.add("#first:" + toks[0])
    feats.add("#len%d" % _bucket(len(text) if length is None else length, (40, 120, 400, 1500)))
    feats.add("#digits%d" % _bucket(sum(map(low.count, _DIGITS)), (1, 4, 12, 40)))
    feats.update([key for marker, key in _MARKERS if marker in win])
    feats.update([key for stem, key in _STEMS if stem in low])
    if not win.isascii() and _non_latin_re().search(win):
        feats.add("#nonlatin")
    langs = feats & _LANGUAGES
    if langs:
        feats.add("#language")
        for lang in langs:
            for prep in _LANG_PREPOSITIONS + ("the",):
                if (prep, lang) in feats:
                    feats.add("#into-language")
                    break
    if win.rstrip().endswith("?"):
        feats.add("#ends-with-question")
    return feats
