"""Detect a request's task type from its chat messages.

    detect(messages) -> Detection(task_type, confidence, source)
    detect_text(text) -> Detection(task_type, confidence, "text")

The model is a multinomial logistic regression over a bounded window of the text (see
``detect_features``), trained by ``bench/train_detector.py`` and shipped as
``detector_model.json``; the file is read on first use and cached, so importing this module
is cheap. Inference is a set of dict look-ups, one sum per class and a softmax: standard
library only.

Precedence in a conversation: the latest user turn decides when it is confident; otherwise
its probabilities are mixed with the system prompt's (weight ``SYSTEM_WEIGHT``) and the
previous user turn's (``HISTORY_WEIGHT``). A user turn that reads as small talk carries no
task signal. ``chat`` is the low-priority fallback: greetings, small talk, empty content,
or nothing standing out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .detect_features import HEAD_CHARS, TAIL_CHARS, features, window

__all__ = ["Detection", "LinearModel", "detect", "detect_text"]

MODEL_PATH = Path(__file__).with_name("detector_model.json")
# A user turn at or above this probability decides on its own.
CONFIDENT = 0.5
SYSTEM_WEIGHT = 0.6
HISTORY_WEIGHT = 0.3
# Below this (mixed) probability nothing stands out, and the answer is `chat`.
MIN_TASK_CONFIDENCE = 0.3
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


class LinearModel:
    """Per-class scores are a bias plus the summed weights of the features present."""

    __slots__ = ("classes", "bias", "weights", "_chat", "_packed", "_packed_bias")

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
        # Each weight row packed into one integer (fixed point, one 32-bit field per class):
        # summing a prompt's rows is then one integer addition per feature, not one per class.
        self._packed = {k: _pack(v) for k, v in self.weights.items()}
        self._packed_bias = _pack(self.bias)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearModel:
        weights: dict[Hashable, Sequence[float]] = {}
        for key, row in data["weights"].items():
            # Pairs are stored as "a b"; tokens never contain white space.
            weights[tuple(key.split(" ")) if " " in key else key] = row
        return cls(data["classes"], data["bias"], weights)

    def probabilities(self, text: str, length: int | None = None) -> list[float]:
        get = self._packed.get
        total = sum(filter(None, map(get, features(text, length))), self._packed_bias)
        scores = _unpack(total, len(self.classes))
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        return [e / total for e in exps]

    def predict_text(self, text: str) -> tuple[str, float]:
        probs = self.probabilities(text)
        best = max(range(len(probs)), key=probs.__getitem__)
        return self.classes[best], probs[best]


_SCALE = 100_000  # weights are stored with at most 3 decimals: exact in this fixed point
_BITS = 40
_MASK = (1 << _BITS) - 1
_HALF = 1 << (_BITS - 1)


def _pack(row: Sequence[float]) -> int:
    packed = 0
    for i, w in enumerate(row):
        packed += round(w * _SCALE) << (_BITS * i)
    return packed or 1 << (_BITS * len(row))  # never 0, so filter(None, ...) keeps it


def _unpack(total: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        field = total & _MASK
        if field >= _HALF:
            field -= 1 << _BITS
        out.append(field / _SCALE)
        total = (total - field) >> _BITS
    return out


@cache
def _model() -> LinearModel:
    return LinearModel.from_dict(json.loads(MODEL_PATH.read_text(encoding="utf-8")))


def detect_text(text: str) -> Detection:
    """The task type of one piece of text (a prompt without roles)."""
    if not text or text.isspace():
        return Detection(_CHAT, 0.0, "none")
    model = _model()
    probs = model.probabilities(text)
    best = max(range(len(probs)), key=probs.__getitem__)
    return Detection(model.classes[best], round(probs[best], 4), "text", dict(zip(model.classes, probs)))


def detect(messages: Sequence[Mapping[str, Any]]) -> Detection:
    """The task type of an OpenAI chat request's ``messages``."""
    model = _model()
    latest, previous, system = _turns(messages)
    mixed: list[float] | None = None
    contributions: list[tuple[str, list[float]]] = []
    for source, turn, weight in (
        ("user", latest, 1.0),
        ("system", system, SYSTEM_WEIGHT),
        ("history", previous, HISTORY_WEIGHT),
    ):
        if turn is None:
            continue
        text, length = turn
        probs = model.probabilities(text, length)
        best = max(range(len(probs)), key=probs.__getitem__)
        if best == model._chat:
            continue  # small talk carries no task signal
        if source == "user" and probs[best] >= CONFIDENT:
            return Detection(model.classes[best], round(probs[best], 4), "user", dict(zip(model.classes, probs)))
        weighted = [p * weight for p in probs]
        contributions.append((source, weighted))
        mixed = weighted if mixed is None else [a + b for a, b in zip(mixed, weighted)]
    if mixed is None:
        return _chat_fallback(model, latest)
    if model._chat >= 0:
        mixed[model._chat] = 0.0
    total_weight = sum(
        {"user": 1.0, "system": SYSTEM_WEIGHT, "history": HISTORY_WEIGHT}[s]
        for s, _ in contributions
    )
    best = max(range(len(mixed)), key=mixed.__getitem__)
    confidence = mixed[best] / total_weight
    if confidence < MIN_TASK_CONFIDENCE:
        return _chat_fallback(model, latest)
    source = max(contributions, key=lambda c: c[1][best])[0]
    scores = {c: v / total_weight for c, v in zip(model.classes, mixed)}
    return Detection(model.classes[best], round(confidence, 4), source, scores)


def _chat_fallback(model: LinearModel, latest: tuple[str, int] | None) -> Detection:
    if latest is None or model._chat < 0:
        return Detection(_CHAT, 0.0, "none")
    probs = model.probabilities(*latest)
    return Detection(_CHAT, round(probs[model._chat], 4), "user", dict(zip(model.classes, probs)))


def _turns(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[tuple[str, int] | None, tuple[str, int] | None, tuple[str, int] | None]:
    """(latest user turn, the user turn before it, the first system prompt) as (text, length)."""
    latest = previous = system = None
    start = max(0, len(messages) - MAX_MESSAGES_SCANNED)
    for i in range(len(messages) - 1, start - 1, -1):
        message = messages[i]
        if not isinstance(message, Mapping) or message.get("role") != "user":
            continue
        turn = _content(message.get("content"))
        if turn is None:
            continue
        if latest is None:
            latest = turn
        else:
            previous = turn
            break
    for message in messages[:8]:
        if isinstance(message, Mapping) and message.get("role") in ("system", "developer"):
            system = _content(message.get("content"))
            break
    return latest, previous, system


def _content(content: object) -> tuple[str, int] | None:
    """A message's text, bounded to what the detector reads, and its full length."""
    if isinstance(content, str):
        text, length = content, len(content)
    elif isinstance(content, list):
        text, length = _join_parts(_text_parts(content))
    else:
        return None
    if not text or window(text).isspace():
        return None
    return text, length


def _text_parts(parts: Iterable[object]) -> list[str]:
    out = []
    for part in parts:
        if isinstance(part, Mapping) and part.get("type") == "text":
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
