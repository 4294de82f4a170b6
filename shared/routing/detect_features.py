"""Feature extraction for task-type detection, shared by the runtime and the trainer.

Only a bounded window of a text is read: its first ``HEAD_CHARS`` and last ``TAIL_CHARS``
characters, where instructions sit in practice ("Summarise the article: ...",
"... the text refers to which one?"). The cost is bounded however long the prompt is.

A text becomes a set of hashable keys:

* words (``bytes``): the window as UTF-8, ASCII lower-cased, common punctuation made white
  space, every digit made ``0`` (``b"summarize"``, ``b"00"``), ``?`` a word of its own;
* single-character markers (``int``, the byte value): ``? : ' ( $ " = % + / * ;``;
* structural features spelled ``b"#..."``: the first word, length and digit-count buckets,
  layout and code markers (``def ``, an indented or a list line, a blank line), non-Latin
  script, a language name and "into <language>", a programming language or programming
  term (``#programming``: pools the evidence of words each too rare in training data to carry
  weight on its own), a text ending with a question mark.

Word stems of task verbs (``STEMS``) are not searched here: the trainer ties each stem to
the vocabulary words containing it and folds its weights into theirs (``word_stems``).

Everything is a C-level operation (``encode``, ``bytes.translate``, ``split``, ``find``,
``count``, set operations) over the window: no regular expressions, no per-character
Python loops, about forty C calls for any text. Standard library only: this module is
imported on the request path.

The model file stores keys as strings (``key_to_json``/``key_from_json``): a word as its
text, a single-character marker as ``"#"`` and the character.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable

HEAD_CHARS = 128
TAIL_CHARS = 96

_SEPARATOR = "\n...\n"
_WINDOW = HEAD_CHARS + TAIL_CHARS + len(_SEPARATOR)
_DROP = b',.;!()[]{}"*:'


def _table() -> bytes:
    table = bytearray(range(256))
    for b in _DROP + b"\x1c\x1d\x1e\x1f":  # the last four: white space to str.split
        table[b] = 0x20
    for b in range(0x41, 0x5B):
        table[b] = b + 0x20  # A-Z -> a-z
    for b in b"123456789":
        table[b] = 0x30  # every digit -> "0"
    return bytes(table)


_TABLE = _table()
# Single characters whose presence is a feature; found in one pass by deleting all others.
SINGLE_MARKERS = "?:'($\"=%+/*;"
_NOT_SINGLE_MARKERS = bytes(b for b in range(256) if chr(b) not in SINGLE_MARKERS)
# Substrings whose presence is a feature: an indented line, a list line, a blank line.
_LAYOUT: tuple[tuple[bytes, bytes], ...] = tuple(
    (s, b"#" + s) for s in (b"\n    ", b"\n-", b"\n\n")
)
# Word stems of task verbs and nouns. Not searched at run time: the trainer ties each
# stem's weights to the vocabulary words that contain it (see ``word_stems``).
STEMS = (
    b"translat", b"summar", b"classif", b"categor", b"extract", b"sentiment", b"brainstorm",
    b"poem", b"story", b"essay", b"function", b"program", b"calculat", b"prove",
)
_LANGUAGES = frozenset(
    (
        b"english german french spanish italian portuguese chinese mandarin cantonese "
        b"japanese korean russian arabic hindi bengali urdu dutch swedish norwegian danish "
        b"finnish polish czech turkish greek hebrew vietnamese thai indonesian malay "
        b"ukrainian romanian hungarian persian farsi swahili latin"
    ).split()
)
# Programming languages and the everyday vocabulary of programming, written from general
# knowledge (not from the labelled prompts). Words that are common English on their own
# ("go", "c", "r", "class", "list", "string") are left out.
_PROGRAMMING = frozenset(
    (
        b"python javascript java typescript c++ c# golang rust ruby php kotlin swift scala perl "
        b"haskell sql html css bash shell powershell regex regular expression json yaml api "
        b"algorithm algorithms recursion recursive array arrays integer integers linked stack "
        b"stacks queue queues tree binary hash function functions method methods variable "
        b"variables program programs programming script compile compiler debug bug code coding "
        b"loop"
    ).split()
)
_LANG_PREPOSITIONS = frozenset((b"into", b"to", b"in", b"from", b"the"))
_LEN_EDGES = (40, 120, 400, 1500)
_LEN_KEYS = tuple(b"#len%d" % i for i in range(len(_LEN_EDGES) + 1))
_DIGIT_EDGES = (1, 4, 12, 40)
_DIGIT_KEYS = tuple(b"#digits%d" % i for i in range(len(_DIGIT_EDGES) + 1))
_QUESTION = b"?"
# Scripts other than Latin, told by the lead byte of their UTF-8 encoding: U+0380-07FF
# (Greek, Cyrillic, Armenian, Hebrew, Arabic, Syriac, ...), U+0800-0FFF (the Indic scripts,
# Thai, Tibetan, ...) and U+3000-DFFF (kana, CJK ideographs, Hangul, ...). Latin letters
# with diacritics, punctuation, symbols and emoji have other lead bytes.
_NOT_NON_LATIN = bytes(b for b in range(256) if not (0xCE <= b <= 0xE0 or 0xE3 <= b <= 0xED))


def window(text: str) -> str:
    """The part of ``text`` the detector reads: a bounded head and tail.

    A window is its own window, so a text already cut down is not copied again.
    """
    if len(text) <= _WINDOW:
        return text
    return text[:HEAD_CHARS] + _SEPARATOR + text[-TAIL_CHARS:]


def features(text: str, length: int | None = None) -> set[Hashable]:
    """The feature keys of ``text`` (see the module docstring).

    ``length`` is the full length when ``text`` is already a bounded excerpt.
    """
    win = text[:HEAD_CHARS] + _SEPARATOR + text[-TAIL_CHARS:] if len(text) > _WINDOW else text
    if win.isascii():
        raw = win.encode()
        nonlatin = False
    else:
        raw = win.lower().encode("utf-8", "surrogatepass")
        nonlatin = len(raw.translate(None, _NOT_NON_LATIN)) > 0
    low = raw.translate(_TABLE).replace(b"?", b" ? ")
    toks = low.split()
    feats: set[Hashable] = set(toks)
    feats.update(raw.translate(None, _NOT_SINGLE_MARKERS))
    feats.add(_LEN_KEYS[bisect_right(_LEN_EDGES, len(text) if length is None else length)])
    feats.add(_DIGIT_KEYS[bisect_right(_DIGIT_EDGES, low.count(b"0"))])
    if toks:
        feats.add(b"#first:" + toks[0])
        if toks[-1] == _QUESTION:
            feats.add(b"#ends-with-question")
    # (``bytes.find``, not ``in``: ``in`` on bytes first tries its operand as an int, slowly.)
    find = raw.find
    if find(b"def ") >= 0:
        feats.add(b"#def ")
    if find(b"\n") >= 0:
        feats.update([key for marker, key in _LAYOUT if find(marker) >= 0])
    if nonlatin:
        feats.add(b"#nonlatin")
    if not _PROGRAMMING.isdisjoint(toks):
        feats.add(b"#programming")
    if not _LANGUAGES.isdisjoint(toks):
        feats.add(b"#language")
        if _into_language(toks, _LANGUAGES.intersection(toks)):
            feats.add(b"#into-language")
    return feats


def _into_language(toks: list[bytes], languages: frozenset[bytes]) -> bool:
    """Whether one of ``languages`` follows "into", "to", "in", "from" or "the"."""
    for lang in languages:
        i = toks.index(lang)
        while True:
            if i and toks[i - 1] in _LANG_PREPOSITIONS:
                return True
            try:
                i = toks.index(lang, i + 1)
            except ValueError:
                break
    return False


def word_stems(key: Hashable) -> tuple[bytes, ...]:
    """The stem features a word key carries (``b"#stem:summar"`` for ``b"summarise"``)."""
    if type(key) is not bytes or key.startswith(b"#"):
        return ()
    return tuple(b"#stem:" + stem for stem in STEMS if key.find(stem) >= 0)


def key_to_json(key: Hashable) -> str | None:
    """How the model file spells a feature key; None for a key it cannot store."""
    if isinstance(key, int):
        return "#" + chr(key)
    if isinstance(key, bytes):
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if len(text) == 2 and text[0] == "#" and text[1] in SINGLE_MARKERS:
            return None  # a word that would read back as a marker
        return text
    return None


def key_from_json(text: str) -> Hashable:
    """The feature key a model file's string stands for (the inverse of ``key_to_json``)."""
    if len(text) == 2 and text[0] == "#" and text[1] in SINGLE_MARKERS:
        return ord(text[1])
    return text.encode("utf-8")
