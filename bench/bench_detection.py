"""Accuracy and speed of the task-type detector.

    .venv/bin/python bench/bench_detection.py [--data PATH] [--folds 5] [--runs 50] [--timing-only]

Accuracy: grouped 5-fold CV (templated prompts kept with their template, see
``train_detector.group_of``) and stratified 5-fold CV, each fold refitted by the training
code and scored through the runtime model. Speed: the shipped model through the public API on
every prompt padded or cut to 2,000 characters (see ``timing``), and on 1 MB of input.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import train_detector as train  # noqa: E402
from shared.routing import detection  # noqa: E402


def _percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def _reference_work() -> int:
    """A fixed amount of pure-Python work, timed beside the detector to show the machine's noise."""
    total = 0
    for i in range(300):
        total += i
    return total


def _percentiles(values: list[int]) -> str:
    values = sorted(values)
    return (f"p50 {_percentile(values, 0.5):.1f} us, p99 {_percentile(values, 0.99):.1f} us, "
            f"max {values[-1] / 1000:.1f} us")


def timing(rows: list[train.Row], runs: int) -> str:
    """Detector speed on every prompt, padded or cut to 2,000 characters.

    Each prompt is timed ``runs`` times, interleaved with the other prompts and with a fixed
    reference workload. A prompt's cost is the median of its runs: the p99 over prompts is the
    detector's own tail (its slowest inputs); the p99 over single calls adds the machine's
    preemptions, which the reference workload's spread measures.
    """
    texts = []
    for row in rows:
        text = row.text
        while len(text) < 2000:
            text += "\n" + text
        texts.append(text[:2000])
    detection.detect_text("warm up")
    per_prompt: list[list[int]] = [[] for _ in texts]
    reference: list[int] = []
    clock = time.perf_counter_ns
    detect_text = detection.detect_text
    for _ in range(runs):
        for i, text in enumerate(texts):
            start = clock()
            detect_text(text)
            per_prompt[i].append(clock() - start)
        for _ in range(len(texts) // 4):
            start = clock()
            _reference_work()
            reference.append(clock() - start)
    calls = [t for times in per_prompt for t in times]
    medians = [sorted(times)[len(times) // 2] for times in per_prompt]
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": texts[0]},
    ]
    chat_samples = []
    for _ in range(runs * 10):
        start = clock()
        detection.detect(messages)
        chat_samples.append(clock() - start)
    huge = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000]
    start = clock()
    detection.detect([{"role": "user", "content": huge}])
    huge_us = (clock() - start) / 1000
    parts = [{"type": "text", "text": huge[i : i + 1000]} for i in range(0, len(huge), 1000)]
    start = clock()
    detection.detect([{"role": "user", "content": parts}])
    parts_us = (clock() - start) / 1000
    return "\n".join(
        [
            f"## timing ({platform.python_implementation()} {platform.python_version()}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})",
            f"detect_text, {len(texts)} prompts of 2,000 chars, {runs} runs each",
            f"  per prompt (median of its runs), over prompts: {_percentiles(medians)}",
            f"  per single call:                               {_percentiles(calls)}",
            f"  reference workload, per single call:           {_percentiles(reference)}",
            f"detect(system + user of 2,000 chars), {len(chat_samples)} calls: "
            f"{_percentiles(chat_samples)}",
            f"detect, one 1 MB user message: {huge_us:.1f} us",
            f"detect, 1 MB as 1,000 text parts: {parts_us:.1f} us",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=train.DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per prompt")
    parser.add_argument("--timing-only", action="store_true", help="skip cross-validation")
    args = parser.parse_args()

    rows = train.load_rows(args.data)
    truth = [r.label for r in rows]
    print(f"data: {args.data.name}, {len(rows)} prompts, {len({r.group for r in rows})} groups")
    if args.timing_only:
        print(timing(rows, args.runs))
        return 0
    for name, splitter in (("grouped", train.grouped_folds), ("stratified", train.stratified_folds)):
        preds = train.cross_validate(rows, splitter(rows, args.folds))
        print()
        print(train.report(f"{name} {args.folds}-fold CV", truth, preds))
    preds = train.cross_validate(rows, train.grouped_folds(rows, args.folds), with_seeds=False)
    s = train.score(truth, preds)
    print()
    print(f"grouped {args.folds}-fold CV without the hand-written seed prompts: "
          f"macro-F1 {s.macro_f1:.3f}")
    print()
    print(timing(rows, args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
