"""Train the task-type detector and write ``shared/routing/detector_model.json``.

    .venv/bin/python bench/train_detector.py [--data PATH] [--out PATH] [--cv]

The model is a multinomial logistic regression over the keys of
``shared.routing.detect_features.features`` (words, single-character and structural markers)
plus word-stem features tied to the vocabulary words that carry them (``word_stems``),
fitted by full-batch Adam with L2 regularisation and class-balanced sample weights, then
pruned and rounded so that the runtime needs only dict look-ups and sums. A stem's weights
are folded into its words' rows on export, so the model file has no stem rows.

Training data: the labelled prompts in ``../shared/data/task_prompts.dev.jsonl`` (CC BY-SA 4.0
compatible; see that folder's README for attribution; read in place, never copied) plus a
small set of hand-written seed prompts below (``SEEDS``). The seeds give every task type,
including ``chat`` (which has no labelled examples) and ``translation`` (12 examples, 11 from
one template), a few generic examples; they are added to every training fold and never
scored.

Everything is deterministic: fixed seed, fixed fold assignment, no sampling in the fit.
numpy is needed here only; the runtime detector uses the standard library.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shared.routing.detect_features import features, key_to_json, word_stems  # noqa: E402
from shared.routing.detection import LinearModel  # noqa: E402
from shared.routing.tasks import TASK_TYPES  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "task_prompts.dev.jsonl"
DEFAULT_OUT = REPO / "shared" / "routing" / "detector_model.json"
SEED = 20240611
MIN_DOC_FREQ = 2
L2 = 3e-2
STEPS = 300
LEARNING_RATE = 0.05
PRUNE_BELOW = 0.03
DECIMALS = 3
# How much to pull `chat` down: it is chosen only when nothing else stands out.
CHAT_BIAS = -1.0

# Hand-written, generic seed prompts (not taken from any data set). Two to four a type give
# the model a prior for phrasings the labelled file lacks; chat gets more (it has no data).
SEEDS: tuple[tuple[str, str], ...] = (
    ("hi", "chat"),
    ("Hello! How are you today?", "chat"),
    ("hey there", "chat"),
    ("Good morning :)", "chat"),
    ("thanks, that was helpful!", "chat"),
    ("Thank you so much", "chat"),
    ("ok cool", "chat"),
    ("lol yes", "chat"),
    ("How's it going?", "chat"),
    ("I'm bored, let's just talk for a bit.", "chat"),
    ("Nice to meet you. What's your name?", "chat"),
    ("That's funny haha", "chat"),
    ("Sorry, I didn't get that. Can you say it again?", "chat"),
    ("bye, see you later", "chat"),
    ("I had a long day at work today.", "chat"),
    ("Great, thanks!", "chat"),
    ("Translate the following sentence into Spanish: Where is the train station?", "translation"),
    ("How do you say 'thank you very much' in Japanese?", "translation"),
    ("Please translate this paragraph to French, keeping the formal tone.", "translation"),
    ("Übersetze bitte ins Englische: Ich habe heute keine Zeit.", "translation"),
    ("What does 'je ne sais pas' mean in English?", "translation"),
    ("Translate to German: The meeting has been moved to Thursday.", "translation"),
    ("Render this product description in Portuguese: Waterproof hiking boots.", "translation"),
    ("Summarize this text in three bullet points.", "summarization"),
    ("Give me a TL;DR of the following report.", "summarization"),
    ("Condense the meeting notes below into a short summary.", "summarization"),
    ("Write a Python function that returns the n-th Fibonacci number.", "code"),
    ("Fix the bug in this JavaScript code: ```const x = [1,2,3]; x.map(y => y*2```", "code"),
    ("How do I reverse a linked list in C++?", "code"),
    ("Solve for x: 3x + 7 = 22. Show your steps.", "reasoning"),
    ("If a train travels 60 miles in 1.5 hours, what is its average speed?", "reasoning"),
    ("Prove that the square root of 2 is irrational.", "reasoning"),
    ("Write a short poem about autumn leaves.", "creative"),
    ("Brainstorm ten names for a coffee shop.", "creative"),
    ("Write a story about a dragon who is afraid of heights.", "creative"),
    ("Extract all the email addresses from the text below.", "extraction"),
    ("List the names, dates and places mentioned in this article as JSON.", "extraction"),
    ("Pull out the product name and price from this receipt.", "extraction"),
    ("Find every date mentioned in the contract and give the event it refers to.", "extraction"),
    ("Classify the sentiment of this review as positive, negative or neutral.", "classification"),
    ("Is this email spam or not spam?", "classification"),
    ("Label each of these animals as mammal, bird or reptile: eagle, cow, snake", "classification"),
    ("What is the capital of Australia?", "qa"),
    ("Who wrote Pride and Prejudice?", "qa"),
    ("Why is the sky blue?", "qa"),
)

_TEMPLATED = re.compile(r"^(t0-templates|natural-instructions)/")


@dataclass(frozen=True)
class Row:
    text: str
    label: str
    group: str


def group_of(source: str) -> str:
    """The cross-validation group of a prompt.

    Prompts made from one template (T0 templates, Natural Instructions tasks) share the
    template as their group, so a fold never trains on the template it is scored on.
    Free-form prompts (Dolly, GSM8K, HumanEval, MBPP, MT-Bench, ...) are each their own group.
    """
    base = source.split(" (", 1)[0]
    if _TEMPLATED.match(base):
        return base.split("#", 1)[0]
    return base


def load_rows(path: Path) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                item = json.loads(line)
                rows.append(Row(item["prompt"], item["task_type"], group_of(item["source"])))
    return rows


# ---------------------------------------------------------------------------- folds


def stratified_folds(rows: Sequence[Row], k: int, seed: int = SEED) -> list[int]:
    """Fold index per row: each label dealt round-robin over the folds after a shuffle."""
    rng = random.Random(seed)
    fold = [0] * len(rows)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row.label].append(i)
    offset = 0
    for label in sorted(by_label):
        idx = by_label[label]
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            fold[i] = (j + offset) % k
        offset += len(idx)
    return fold


def grouped_folds(rows: Sequence[Row], k: int, seed: int = SEED) -> list[int]:
    """Fold index per row, whole groups at a time, balancing each label over the folds."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.group].append(i)
    names = sorted(groups)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(groups[g]))  # stable: big groups first, ties shuffled
    load: dict[tuple[str, int], int] = Counter()
    sizes = [0] * k
    fold = [0] * len(rows)
    for name in names:
        label = rows[groups[name][0]].label
        best = min(range(k), key=lambda f: (load[label, f], sizes[f]))
        for i in groups[name]:
            fold[i] = best
        load[label, best] += len(groups[name])
        sizes[best] += len(groups[name])
    return fold


# ---------------------------------------------------------------------------- fitting


def fit(
    texts: Sequence[str], labels: Sequence[str], *, with_seeds: bool = True
) -> dict:
    """Fit the model and return its JSON-ready form (see ``LinearModel.from_dict``)."""
    import numpy as np

    texts = list(texts)
    labels = list(labels)
    if with_seeds:
        texts += [t for t, _ in SEEDS]
        labels += [lab for _, lab in SEEDS]
    classes = [t for t in TASK_TYPES if t in set(labels)]
    cls_index = {c: i for i, c in enumerate(classes)}
    docs = [features(t) for t in texts]
    df = Counter(key for d in docs for key in d)
    # Keys the model file cannot spell (see key_to_json) are left out.
    names = {key: key_to_json(key) for key, n in df.items() if n >= MIN_DOC_FREQ}
    vocab = sorted((key for key, name in names.items() if name is not None), key=names.__getitem__)
    col = {key: j for j, key in enumerate(vocab)}
    # Word stems ("summar", "translat", ...) are tied to the words that carry them: a stem's
    # value in a prompt is the number of distinct vocabulary words in it that contain the
    # stem, and its weights are folded into those words' rows on export, so the runtime
    # looks words up and never searches for stems.
    stems_of = {key: word_stems(key) for key in vocab}
    stems_of = {key: stems for key, stems in stems_of.items() if stems}
    stem_col = {
        stem: len(vocab) + i
        for i, stem in enumerate(sorted({s for stems in stems_of.values() for s in stems}))
    }
    x = np.zeros((len(docs), len(vocab) + len(stem_col)), dtype=np.float64)
    for i, d in enumerate(docs):
        for key in d:
            j = col.get(key)
            if j is not None:
                x[i, j] = 1.0
                for stem in stems_of.get(key, ()):
                    x[i, stem_col[stem]] += 1.0
    y = np.array([cls_index[lab] for lab in labels])
    counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
    sample_w = (len(y) / (len(classes) * counts))[y]
    sample_w /= sample_w.sum()
    onehot = np.eye(len(classes))[y]

    w = np.zeros((x.shape[1], len(classes)))
    b = np.zeros(len(classes))
    params = [w, b]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, STEPS + 1):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) * sample_w[:, None]
        grads = [x.T @ err + L2 * w, err.sum(axis=0)]
        for i, (param, g) in enumerate(zip(params, grads)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            mhat = m[i] / (1 - beta1**step)
            vhat = v[i] / (1 - beta2**step)
            param -= LEARNING_RATE * mhat / (np.sqrt(vhat) + eps)

    # Centre each feature's weights over the classes (softmax is unchanged), prune, round.
    w -= w.mean(axis=1, keepdims=True)
    b -= b.mean()
    if "chat" in cls_index:
        b[cls_index["chat"]] += CHAT_BIAS
    weights = {}
    for j, key in enumerate(vocab):
        row = w[j] + sum((w[stem_col[stem]] for stem in stems_of.get(key, ())), np.zeros(len(classes)))
        if np.abs(row).max() >= PRUNE_BELOW:
            weights[names[key]] = [round(float(a), DECIMALS) for a in row]
    return {
        "format": 1,
        "classes": classes,
        "bias": [round(float(a), DECIMALS) for a in b],
        "weights": weights,
    }


# ---------------------------------------------------------------------------- evaluation


def cross_validate(
    rows: Sequence[Row], fold: Sequence[int], *, with_seeds: bool = True
) -> list[str]:
    """Predicted label per row, each predicted by a model that did not train on its fold."""
    preds = [""] * len(rows)
    for f in sorted(set(fold)):
        train = [r for r, g in zip(rows, fold) if g != f]
        model = LinearModel.from_dict(
            fit([r.text for r in train], [r.label for r in train], with_seeds=with_seeds)
        )
        for i, (row, g) in enumerate(zip(rows, fold)):
            if g == f:
                preds[i] = model.predict_text(row.text)[0]
    return preds


@dataclass(frozen=True)
class Scores:
    labels: tuple[str, ...]
    confusion: dict[tuple[str, str], int]
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    macro_f1: float
    accuracy: float


def score(truth: Sequence[str], preds: Sequence[str]) -> Scores:
    """Per-label precision, recall and F1 over the labels in ``truth``; macro-F1 over them."""
    labels = tuple(t for t in TASK_TYPES if t in set(truth))
    confusion = Counter(zip(truth, preds))
    precision, recall, f1 = {}, {}, {}
    for lab in labels:
        tp = confusion[lab, lab]
        predicted = sum(1 for p in preds if p == lab)
        actual = sum(1 for t in truth if t == lab)
        precision[lab] = tp / predicted if predicted else 0.0
        recall[lab] = tp / actual if actual else 0.0
        pr = precision[lab] + recall[lab]
        f1[lab] = 2 * precision[lab] * recall[lab] / pr if pr else 0.0
    accuracy = sum(1 for t, p in zip(truth, preds) if t == p) / len(truth)
    return Scores(
        labels, dict(confusion), precision, recall, f1, sum(f1.values()) / len(labels), accuracy
    )


def report(title: str, truth: Sequence[str], preds: Sequence[str]) -> str:
    s = score(truth, preds)
    cols = [t for t in TASK_TYPES if t in set(truth) | set(preds)]
    abbrev = {c: c[:5] for c in cols}
    lines = [f"## {title}", f"macro-F1 {s.macro_f1:.3f}   accuracy {s.accuracy:.3f}   n={len(truth)}"]
    lines.append("")
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(f"{'':>15}" + "".join(f"{abbrev[c]:>7}" for c in cols))
    for t in s.labels:
        lines.append(f"{t:>15}" + "".join(f"{s.confusion.get((t, c), 0):>7}" for c in cols))
    lines.append("")
    lines.append(f"{'type':>15}{'precision':>11}{'recall':>9}{'F1':>7}{'n':>6}")
    for t in s.labels:
        n = sum(1 for x in truth if x == t)
        lines.append(f"{t:>15}{s.precision[t]:>11.3f}{s.recall[t]:>9.3f}{s.f1[t]:>7.3f}{n:>6}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cv", action="store_true", help="also print 5-fold CV figures")
    args = parser.parse_args(argv)

    rows = load_rows(args.data)
    model = fit([r.text for r in rows], [r.label for r in rows])
    args.out.write_text(dump(model), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(model['weights'])} features)")
    if args.cv:
        truth = [r.label for r in rows]
        for name, splitter in (("grouped", grouped_folds), ("stratified", stratified_folds)):
            preds = cross_validate(rows, splitter(rows, 5))
            print(report(f"{name} 5-fold CV", truth, preds))
    return 0


def dump(model: dict) -> str:
    """The model file's text: one feature a line, so diffs stay readable."""
    lines = ["{", f'"format": {model["format"]},']
    lines.append(f'"classes": {json.dumps(model["classes"])},')
    lines.append(f'"bias": {json.dumps(model["bias"])},')
    lines.append('"weights": {')
    items = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v)}" for k, v in model["weights"].items()]
    lines.append(",\n".join(items))
    lines.append("}}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
