"""Task-type detection through its public API, plus the trained model's quality floor."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.routing import detection
from shared.routing.detect_features import HEAD_CHARS, TAIL_CHARS, window
from shared.routing.detection import Detection, detect, detect_text
from shared.routing.tasks import TASK_TYPES

try:
    from bench import train_detector as train
except ImportError:  # pragma: no cover
    train = None

DATA = train.DEFAULT_DATA if train else None
needs_training = pytest.mark.skipif(
    train is None or DATA is None or not DATA.exists(), reason="training data not available"
)


def user(content: object) -> dict:
    return {"role": "user", "content": content}


def system(content: object) -> dict:
    return {"role": "system", "content": content}


# ---------------------------------------------------------------- single texts


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Write a Python function that checks whether a string is a palindrome.", "code"),
        ("Translate the following sentence into French: I would like a coffee.", "translation"),
        ("Summarize the article below in two sentences:\n\nThe city council met on...", "summarization"),
        ("Write a short poem about the sea at night.", "creative"),
        ("Who was the first person to walk on the moon?", "qa"),
        (
            "Tom has 3 boxes with 12 apples each. He gives away 7 apples. "
            "How many apples does he have left?",
            "reasoning",
        ),
        ("Classify each of these as a fruit or a vegetable: carrot, apple, leek", "classification"),
        ("hi", "chat"),
        ("thanks!", "chat"),
    ],
)
def test_detect_text_recognises_clear_prompts(text: str, task: str) -> None:
    assert detect_text(text).task_type == task


def test_detection_is_a_frozen_value() -> None:
    d = detect_text("Write a haiku about rain")
    assert isinstance(d, Detection)
    with pytest.raises(AttributeError):
        d.task_type = "code"  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_confidence_is_a_probability_and_task_is_known(text: str) -> None:
    d = detect_text(text)
    assert 0.0 <= d.confidence <= 1.0
    assert d.task_type in TASK_TYPES
    d = detect([user(text)])
    assert 0.0 <= d.confidence <= 1.0
    assert d.task_type in TASK_TYPES


# ---------------------------------------------------------------- conversations


def test_latest_user_turn_wins_over_the_system_prompt() -> None:
    d = detect(
        [
            system("You are an expert Python programmer. Answer with code."),
            user("Translate into German: Where is the station?"),
        ]
    )
    assert (d.task_type, d.source) == ("translation", "user")


def test_latest_user_turn_wins_over_earlier_turns() -> None:
    d = detect(
        [
            user("Write a poem about autumn."),
            {"role": "assistant", "content": "Leaves fall..."},
            user("Write a Python function to merge two sorted lists."),
        ]
    )
    assert (d.task_type, d.source) == ("code", "user")


def test_system_prompt_decides_when_the_user_turn_carries_no_task() -> None:
    d = detect(
        [
            system("Translate everything the user writes into Spanish."),
            user("Good morning, how are you?"),
        ]
    )
    assert (d.task_type, d.source) == ("translation", "system")


def test_small_talk_with_no_task_signal_is_chat() -> None:
    d = detect(
        [
            system("You are a friendly assistant."),
            user("hi"),
            {"role": "assistant", "content": "Hello!"},
            user("thanks!"),
        ]
    )
    assert d.task_type == "chat"
    assert d.confidence < 0.5


def test_content_as_a_list_of_parts_reads_the_text_parts_only() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "Translate into Italian:"},
        {"type": "text", "text": "The weather is lovely today."},
    ]
    assert detect([user(parts)]).task_type == detect_text(
        "Translate into Italian:\nThe weather is lovely today."
    ).task_type == "translation"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [user(None)],
        [user("")],
        [user("   \n ")],
        [user([])],
        [user([{"type": "image_url", "image_url": {"url": "x"}}])],
        [system(None), user(None)],
        [{"role": "assistant", "content": "Hello"}],
        [{"role": "user"}],
        ["not a message"],  # type: ignore[list-item]
    ],
)
def test_empty_content_is_chat_with_low_confidence(messages: list) -> None:
    d = detect(messages)
    assert d.task_type == "chat"
    assert d.confidence <= 0.5


def test_detect_text_of_empty_text_is_chat_with_no_confidence() -> None:
    assert detect_text("") == Detection("chat", 0.0, "none")


# ---------------------------------------------------------------- bounded work


def test_one_megabyte_prompt_is_read_only_through_a_bounded_window(monkeypatch) -> None:
    seen: list[int] = []
    real = detection.features

    def spy(text: str, length: int | None = None):
        seen.append(len(window(text)))
        return real(text, length)

    monkeypatch.setattr(detection, "features", spy)
    huge = "Summarise the article: " + "word " * 200_000
    assert len(huge) > 1_000_000
    detect([user(huge)])
    parts = [{"type": "text", "text": "word " * 200} for _ in range(1_000)]
    detect([user(parts)])
    assert seen
    assert max(seen) <= HEAD_CHARS + TAIL_CHARS + 8


def test_list_of_parts_is_joined_within_a_bound() -> None:
    parts = [{"type": "text", "text": "x" * 1000} for _ in range(1_000)]
    text, length = detection._content(parts)  # the bounded join
    assert length == 1_000 * 1000 + 999
    assert len(text) <= 2 * (HEAD_CHARS + TAIL_CHARS) + 2


def test_model_is_loaded_lazily_and_once() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import shared.routing.detection as d; "
        "assert d._model.cache_info().currsize == 0; d.detect_text('hi'); d.detect_text('yo'); "
        "assert d._model.cache_info().misses == 1; "
        "assert 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- training


@needs_training
def test_grouped_cross_validation_macro_f1_is_above_a_floor() -> None:
    pytest.importorskip("numpy")
    rows = train.load_rows(DATA)
    preds = train.cross_validate(rows, train.grouped_folds(rows, 3))
    scores = train.score([r.label for r in rows], preds)
    assert scores.macro_f1 >= 0.75, train.report("grouped 3-fold", [r.label for r in rows], preds)


@needs_training
def test_training_script_reproduces_the_shipped_model() -> None:
    pytest.importorskip("numpy")
    rows = train.load_rows(DATA)
    retrained = train.fit([r.text for r in rows], [r.label for r in rows])
    shipped = json.loads(detection.MODEL_PATH.read_text(encoding="utf-8"))
    assert retrained["classes"] == shipped["classes"]
    assert retrained["bias"] == pytest.approx(shipped["bias"], abs=2e-3)
    assert set(retrained["weights"]) ^ set(shipped["weights"]) <= {
        k for k, v in shipped["weights"].items() if max(map(abs, v)) < 0.04
    }
    fresh = detection.LinearModel.from_dict(retrained)
    for row in rows[::13]:
        assert fresh.predict_text(row.text)[0] == detection._model().predict_text(row.text)[0]


# ---------------------------------------------------------------- implementation details


def test_fast_detection_equals_a_constructed_one() -> None:
    d = detect_text("Translate into German: good night")
    same = Detection(d.task_type, d.confidence, d.source, dict(d.scores))
    assert d == same and repr(d) == repr(same) and hash(d) == hash(same)
    assert d.confidence == round(d.score(d.task_type), 4)
    assert sum(d.scores.values()) == pytest.approx(1.0)


def test_feature_keys_survive_the_model_file() -> None:
    from shared.routing.detect_features import features, key_from_json, key_to_json

    for text in ("Summarise: a (b) 'c' $5 = 3 + 4; x/y * z?", "Привет, как дела?", "def f():\n    return 1"):
        for key in features(text):
            name = key_to_json(key)
            if name is not None:
                assert key_from_json(name) == key


def test_non_latin_script_is_a_feature() -> None:
    from shared.routing.detect_features import features

    assert b"#nonlatin" in features("日本語に翻訳してください")
    assert b"#nonlatin" in features("Переведи на английский")
    assert b"#nonlatin" not in features("Übersetze bitte: café, naïve — “quoted” 😀")


def test_system_prompt_decisions_are_remembered_within_a_bound() -> None:
    model = detection.LinearModel.from_dict(
        json.loads(detection.MODEL_PATH.read_text(encoding="utf-8"))
    )
    for i in range(detection.RECENT_SYSTEM_PROMPTS * 2 + 5):
        model._decide_recent(f"You are assistant number {i}.", 30)
    assert len(model._recent) <= detection.RECENT_SYSTEM_PROMPTS
    assert model._decide_recent("x y", 3) == model.decide("x y", 3)
