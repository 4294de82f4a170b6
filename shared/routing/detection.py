"""Detect a request's task type from its chat messages.

    detect(messages) -> Detection(task_type, confidence, source)
    detect_text(text) -> Detection(task_type, confidence, "text")

The model is a multinomial logistic regression over a bounded window of the text (see
``detect_features``), trained by ``bench/train_detector.py`` and shipped as
``detector_model.json``; the file is read on first use and cached, so importing this module
is cheap. Inference is one dict look-up and one integer addition per feature (each weight
row is packed into one integer), one struct unpack and a softmax: standard library only.

Precedence in a conversation: the latest user turn decides when it is confident; otherwise
its probabilities are mixed with the system prompt's (weight ``SYSTEM_WEIGHT``) and the
previous user turn's (``HISTORY_WEIGHT``). A user turn that reads as small talk carries no
task signal. ``chat`` is the low-priority fallback: greetings, small talk, empty content,
or nothing standing out.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from math import exp
from pathlib import Path
from typing import Any

from .detect_features import HEAD_CHARS, TAIL_CHARS, features, key_from_json, window

__all__ = ["Detection", "LinearModel", "detect", "detect_text"]

MODEL_PATH = Path(__file__).with_name("detector_model.json")
# A user turn at or above this probability decides on its own.
CONFIDENT = 0.5
SYSTEM_WEIGHT = 0.6
HISTORY_WEIGHT = 0.3
# Below this (mixed) probability nothing stands out, and the answer is `chat`.
MIN_TASK_CONFIDENCE = 0.3
# How many system prompts' decisions a model remembers (the scores of a remembered decision
# are only read, never handed out).
RECENT_SYSTEM_PROMPTS = 256
# Only this many of the latest messages are searched for the user turns.
MAX_MESSAGES_SCANNED = 64
_CHAT = "chat"
_MAX_TEXT = HEAD_CHARS + TAIL_CHARS


@dataclass(frozen=True, slots=True)
class Detection:
    task_type: str
    confidence: float
    # Where the decision came from: "user", "system", "history", "text" or "none".
    source: str = "user"
    # The probability of every task type behind the decision (empty when there was no text).
    scores: Mapping[str, float] = field(default_factory=dict, compare=False, repr=False)

    def score(self, task_type: str) -> float:
        return self.scores.get(task_type, 0.0)


# The hot path builds a Detection by setting its slots directly: the same object as
# ``Detection(...)`` makes, without the frozen dataclass __init__'s object.__setattr__ calls.
_new = object.__new__
_set_task_type, _set_confidence, _set_source, _set_scores = (
    Detection.__dict__[name].__set__ for name in ("task_type", "confidence", "source", "scores")
)


def _detection(task_type: str, probability: float, source: str, scores: dict[str, float]) -> Detection:
    d = _new(Detection)
    _set_task_type(d, task_type)
    _set_confidence(d, round(probability * 10_000.0) / 10_000.0)  # 4 decimals
    _set_source(d, source)
    _set_scores(d, scores)
    return d


class LinearModel:
    """Per-class scores are a bias plus the summed weights of the features present."""

    __slots__ = (
        "classes", "bias", "weights", "_chat", "_packed", "_packed_bias", "_unpack", "_nbytes",
        "_recent",
    )

    def __init__(
        self,
        classes: Sequence[str],
        bias: Sequence[float],
        weights: Mapping[Hashable, Sequence[float]],
    ) -> None:
        self.classes = tuple(classes)
        self.bias = tuple(bias)
        self.weights = {k: tuple(v) for k, v in weights.items()}
        self._chat = self.classes.index(_CHAT) if _CHAT in self.classes else -1
        n = len(self.classes)
        # Each weight row packed into one integer (fixed point, one unsigned field per class,
        # the bias row carrying an offset of half the field's range): summing a prompt's rows
        # is then one integer addition per feature, and reading the per-class sums back is
        # one to_bytes and one struct unpack. The field is wide enough for the largest sum
        # the weights allow, so no field can borrow from or carry into its neighbour.
        bound = sum(abs(round(b * _SCALE)) for b in self.bias)
        for i in range(n):
            bound += sum(abs(round(row[i] * _SCALE)) for row in self.weights.values())
        bits = 32 if bound < 1 << 31 else 64
        while bound >= 1 << (bits - 1):
            bits *= 2
        packed = {k: _pack(v, bits) for k, v in self.weights.items()}
        self._packed = {k: v for k, v in packed.items() if v}  # a zero row adds nothing
        self._packed_bias = _pack(self.bias, bits) + _pack([1 << (bits - 1)] * n, bits, 1)
        self._nbytes = n * bits // 8
        # Decisions on recent system prompts, which repeat from request to request.
        self._recent: dict[tuple[str, int], tuple[int, float, dict[str, float]]] = {}
        if bits in (32, 64):
            self._unpack = struct.Struct("<%d%s" % (n, "I" if bits == 32 else "Q")).unpack
        else:
            self._unpack = partial(_unpack_wide, bits=bits, n=n)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearModel:
        weights = {key_from_json(key): row for key, row in data["weights"].items()}
        return cls(data["classes"], data["bias"], weights)

    def probabilities(self, text: str, length: int | None = None) -> list[float]:
        return list(self.decide(text, length)[2].values())

    def decide(self, text: str, length: int | None = None) -> tuple[int, float, dict[str, float]]:
        """(index of the most probable class, its probability, every class's probability)."""
        total = sum(filter(None, map(self._packed.get, features(text, length))), self._packed_bias)
        scores = self._unpack(total.to_bytes(self._nbytes, "little"))
        top = max(scores)  # the offset every field carries cancels here
        exps = [exp((s - top) * _INV_SCALE) for s in scores]
        norm = 1.0 / sum(exps)  # the top class's exp is 1: this is its probability
        return scores.index(top), norm, dict(zip(self.classes, [e * norm for e in exps]))

    def _decide_recent(self, text: str, length: int) -> tuple[int, float, dict[str, float]]:
        """``decide``, remembered for the last few hundred distinct texts (system prompts)."""
        key = (text, length)
        found = self._recent.get(key)
        if found is None:
            if len(self._recent) >= RECENT_SYSTEM_PROMPTS:
                self._recent.clear()
            found = self._recent[key] = self.decide(text, length)
        return found

    def predict_text(self, text: str) -> tuple[str, float]:
        best, confidence, _ = self.decide(text)
        return self.classes[best], confidence


_SCALE = 100_000  # weights are stored with at most 3 decimals: exact in this fixed point
_INV_SCALE = 1 / _SCALE


def _pack(row: Sequence[float], bits: int, scale: int = _SCALE) -> int:
    packed = 0
    for i, w in enumerate(row):
        packed += round(w * scale) << (bits * i)
    return packed


def _unpack_wide(data: bytes, bits: int, n: int) -> tuple[int, ...]:
    total = int.from_bytes(data, "little")
    mask = (1 << bits) - 1
    return tuple((total >> (bits * i)) & mask for i in range(n))


@cache
def _model() -> LinearModel:
    return LinearModel.from_dict(json.loads(MODEL_PATH.read_text(encoding="utf-8")))


def detect_text(text: str) -> Detection:
    """The task type of one piece of text (a prompt without roles)."""
    if not text or text.isspace():
        return Detection(_CHAT, 0.0, "none")
    model = _model()
    best, confidence, scores = model.decide(text)
    return _detection(model.classes[best], confidence, "text", scores)


def detect(messages: Sequence[Mapping[str, Any]]) -> Detection:
    """The task type of an OpenAI chat request's ``messages``."""
    model = _model()
    at, latest = _user_turn(messages, len(messages) - 1)
    user: tuple[int, float, dict[str, float]] | None = None
    if latest is not None:
        # The common case: a latest user turn that is confident decides on its own.
        user = model.decide(*latest)
        best, confidence, scores = user
        if confidence >= CONFIDENT and best != model._chat:
            return _detection(model.classes[best], confidence, "user", scores)
    previous = _user_turn(messages, at - 1)[1] if latest is not None else None
    mixed: list[float] | None = None
    contributions: list[tuple[str, float, list[float]]] = []
    for source, turn, weight in (
        ("user", latest, 1.0),
        ("system", _system_turn(messages), SYSTEM_WEIGHT),
        ("history", previous, HISTORY_WEIGHT),
    ):
        if turn is None:
            continue
        if source == "user":
            best, _, scores = user  # type: ignore[misc]
        elif source == "system":
            best, _, scores = model._decide_recent(*turn)
        else:
            best, _, scores = model.decide(*turn)
        if best == model._chat:
            continue  # small talk carries no task signal
        weighted = [p * weight for p in scores.values()]
        contributions.append((source, weight, weighted))
        mixed = weighted if mixed is None else [a + b for a, b in zip(mixed, weighted)]
    if mixed is None:
        return _chat_fallback(model, user)
    if model._chat >= 0:
        mixed[model._chat] = 0.0
    total_weight = sum(weight for _, weight, _ in contributions)
    best = mixed.index(max(mixed))
    confidence = mixed[best] / total_weight
    if confidence < MIN_TASK_CONFIDENCE:
        return _chat_fallback(model, user)
    source = max(contributions, key=lambda c: c[2][best])[0]
    scores = {c: v / total_weight for c, v in zip(model.classes, mixed)}
    return _detection(model.classes[best], confidence, source, scores)


def _chat_fallback(model: LinearModel, user: tuple[int, float, dict[str, float]] | None) -> Detection:
    if user is None or model._chat < 0:
        return Detection(_CHAT, 0.0, "none")
    scores = user[2]
    return _detection(_CHAT, scores[_CHAT], "user", scores)


def _is_mapping(message: object) -> bool:
    return type(message) is dict or isinstance(message, Mapping)


def _user_turn(
    messages: Sequence[Mapping[str, Any]], last: int
) -> tuple[int, tuple[str, int] | None]:
    """The index and (text, length) of the latest user turn with text at or before ``last``.

    Only the latest ``MAX_MESSAGES_SCANNED`` messages are searched.
    """
    start = max(0, len(messages) - MAX_MESSAGES_SCANNED)
    for i in range(last, start - 1, -1):
        message = messages[i]
        if _is_mapping(message) and message.get("role") == "user":
            turn = _content(message.get("content"))
            if turn is not None:
                return i, turn
    return -1, None


def _system_turn(messages: Sequence[Mapping[str, Any]]) -> tuple[str, int] | None:
    """The first system (or developer) prompt among the first messages, as (text, length)."""
    for message in messages[:8]:
        if _is_mapping(message) and message.get("role") in ("system", "developer"):
            return _content(message.get("content"))
    return None


def _content(content: object) -> tuple[str, int] | None:
    """A message's text, cut down to what the detector reads, and its full length."""
    if isinstance(content, str):
        text, length = content, len(content)
    elif isinstance(content, list):
        text, length = _join_parts(_text_parts(content))
    else:
        return None
    text = window(text)
    if not text or text.isspace():
        return None
    return text, length


def _text_parts(parts: Iterable[object]) -> list[str]:
    out = []
    for part in parts:
        if (type(part) is dict or isinstance(part, Mapping)) and part.get("type") == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                out.append(text)
        elif isinstance(part, str) and part:
            out.append(part)
    return out


def _join_parts(texts: list[str]) -> tuple[str, int]:
    """Join text parts, copying at most a head and a tail of them (a bounded amount)."""
    length = sum(map(len, texts)) + max(0, len(texts) - 1)
    if length <= 2 * _MAX_TEXT:
        return "\n".join(texts), length
    head: list[str] = []
    size = 0
    for t in texts:
        head.append(t[: _MAX_TEXT - size])
        size += len(head[-1]) + 1
        if size >= _MAX_TEXT:
            break
    tail: list[str] = []
    size = 0
    for t in reversed(texts):
        tail.append(t[-(_MAX_TEXT - size):])
        size += len(tail[-1]) + 1
        if size >= _MAX_TEXT:
            break
    return "\n".join(head) + "\n" + "\n".join(reversed(tail)), length
