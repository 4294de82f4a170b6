"""Routing savings, measured: replay a workload through the router's decision path.

    .venv/bin/python bench/bench_savings.py [--config shared/config/samples/production.json]
                                            [--data ../shared/data/task_prompts.dev.jsonl] [--folds 5]

Every prompt of the workload (by default the 646 labelled dev prompts) goes through the same
decision code as `POST /api/v1/route` (detection, route, strategy; no provider call), under
the config and each strategy. The first candidate is taken as the one that serves it (no
failures). Token counts are estimated: prompt tokens from the text (about four characters a
token plus per-message overhead), completion tokens from the true task type (below).

Reported per strategy:
* cost against sending everything to the config's baseline (`cost.baseline_provider`),
* the share of `code` and `reasoning` prompts that reach a premium model,
* the share of simple prompts (summarization, translation, extraction, classification, chat)
  served by the cheapest provider eligible for their task's route.

Detection is measured twice: with the shipped detector (trained on this very file, so
optimistic), and out of fold: each prompt is detected by a model trained by
bench/train_detector.py on the other folds of a grouped split (templates kept together),
which is what unseen prompts would get.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared.config import load_file  # noqa: E402
from shared.providers.base import ChatRequest  # noqa: E402
from shared.routing import detection  # noqa: E402
from shared.routing.latency import LatencyTracker  # noqa: E402
from shared.routing.planner import Planner  # noqa: E402
from shared.routing.strategies import build_strategies  # noqa: E402
from shared.usage.pricing import cost_usd, estimate_prompt_tokens  # noqa: E402

# Typical completion lengths by task type (tokens): code and reasoning answers are long,
# classification answers a label. Stated assumptions, not measurements.
COMPLETION_TOKENS = {
    "code": 450, "reasoning": 350, "creative": 400, "qa": 250, "summarization": 120,
    "translation": None, "extraction": 120, "classification": 8, "chat": 60,
}
SIMPLE = ("summarization", "translation", "extraction", "classification", "chat")
PREMIUM_TYPES = ("code", "reasoning")


def completion_tokens(task: str, prompt_tokens: int) -> int:
    n = COMPLETION_TOKENS.get(task)
    return int(prompt_tokens * 1.1) if n is None else n  # a translation is about as long as its source


def replay(config, rows, strategy: str, detect_for) -> dict:
    planner_cache: dict = {}
    total = base = 0.0
    premium_hits = premium_n = simple_hits = simple_n = 0
    chosen_counter: Counter = Counter()
    baseline = config.providers[config.cost.baseline_provider]
    for i, row in enumerate(rows):
        detect = detect_for(i)
        planner = planner_cache.get(id(detect))
        if planner is None:
            planner = planner_cache[id(detect)] = Planner(config, build_strategies(LatencyTracker()), detect=detect)
        messages = [{"role": "user", "content": row.text}]
        decision = planner.plan(ChatRequest(messages=messages, strategy=strategy))
        chosen = config.providers[decision.candidates[0]]
        chosen_counter[chosen.name] += 1
        p = estimate_prompt_tokens(messages)
        c = completion_tokens(row.label, p)
        total += cost_usd(chosen.price, p, c)
        base += cost_usd(baseline.price, p, c)
        if row.label in PREMIUM_TYPES:
            premium_n += 1
            premium_hits += chosen.premium
        if row.label in SIMPLE:
            simple_n += 1
            eligible = [config.providers[n] for n in config.route_for_task(row.label).candidates]
            cheapest = min(cost_usd(e.price, p, c) for e in eligible)
            simple_hits += cost_usd(chosen.price, p, c) <= cheapest + 1e-12
    return {"cost": total, "baseline": base, "saving": 1 - total / base if base else 0.0,
            "premium_share": premium_hits / premium_n if premium_n else 1.0,
            "cheapest_share": simple_hits / simple_n if simple_n else 1.0,
            "chosen": chosen_counter}


def out_of_fold_detectors(rows, folds: int):
    """One detect() per row, each backed by a model that never saw the row's group."""
    import train_detector as td

    fold = td.grouped_folds(rows, folds)
    detectors = {}
    for f in sorted(set(fold)):
        train = [r for r, g in zip(rows, fold) if g != f]
        model = detection.LinearModel.from_dict(td.fit([r.text for r in train], [r.label for r in train]))

        def detect(messages, _model=model):
            original = detection._model
            detection._model = lambda: _model
            try:
                return detection.detect(messages)
            finally:
                detection._model = original

        detectors[f] = detect
    return lambda i: detectors[fold[i]]


def main() -> None:
    import train_detector as td

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "shared/config/samples/production.json"))
    ap.add_argument("--data", default=str(td.DEFAULT_DATA))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    config = load_file(args.config)
    rows = td.load_rows(Path(args.data))
    print(f"# bench_savings: {len(rows)} prompts, config {Path(args.config).name}, "
          f"baseline {config.cost.baseline_provider}")
    counts = Counter(r.label for r in rows)
    print("workload:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    modes = [("shipped detector (in-sample)", lambda i: detection.detect),
             (f"out-of-fold detector (grouped {args.folds}-fold)", out_of_fold_detectors(rows, args.folds))]
    for label, detect_for in modes:
        print(f"\n## {label}")
        print("| strategy | cost USD | baseline USD | saving | code+reasoning on premium | simple on cheapest |")
        print("| --- | --- | --- | --- | --- | --- |")
        for strategy in ("cost", "quality", "latency"):
            r = replay(config, rows, strategy, detect_for)
            print(f"| {strategy} | {r['cost']:.4f} | {r['baseline']:.4f} | {r['saving']:.1%} | "
                  f"{r['premium_share']:.1%} | {r['cheapest_share']:.1%} |")
        r = replay(config, rows, "cost", detect_for)
        print("served by (cost strategy):", ", ".join(f"{k} {v}" for k, v in r["chosen"].most_common()))


if __name__ == "__main__":
    main()
