"""Build the alignment samples: ``sft/qa.jsonl``, ``prompts.jsonl`` and ``comparisons.jsonl``.

All three are written for this project from templates (no external data): arithmetic,
unit conversions, the capitals of a small invented world (kept consistent across files),
definitions of data-pipeline terms, weekdays and word games. Deterministic: rerunning
rewrites byte-identical files.

    python tools/make_align_samples.py          # writes into samples/

``comparisons.jsonl`` pairs a correct, complete, polite answer (chosen) with one that is
wrong, cut short or rude (rejected); ``reason`` says which, so the preference is learnable.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "samples"  # where the samples live
SEED = 20261128

# An invented world, so "facts" can be checked against this file and nothing else.
CAPITALS = {
    "Veloria": "Tamsk",
    "Orrin": "Quell",
    "Bastavia": "Lune",
    "Kestrel Isles": "Port Amber",
    "Marrow": "Dunhollow",
    "Seravin": "Ilt",
    "Cardova": "Mirest",
    "Ythra": "Sol Vey",
    "Pellan": "Corbin",
    "Anthelia": "Rask",
    "Dromund": "Velt",
    "Isola Minor": "Brine",
    "Tarsk": "Hallow",
    "Ghent Reach": "Oarsby",
    "Calveth": "Nim",
    "Umbria Nova": "Treve",
}
DEFINITIONS = {
    "a shard": "a file holding one slice of a larger dataset, so work can be split and resumed",
    "deduplication": "removing documents that repeat, exactly or nearly, text already kept",
    "a tokenizer": "the component that turns text into the integer ids a language model reads",
    "a WARC file": "the archive format web crawlers use to store raw HTTP responses",
    "a language model": "a model that predicts the next token of text from the tokens before it",
    "MinHash": "a sketch of a document's word shingles used to estimate Jaccard similarity cheaply",
    "a quality filter": "a rule or classifier that drops documents unlikely to help training",
    "a training mix": "the weighted blend of data sources a model is trained on",
    "perplexity": "the exponential of the average per-token loss; lower means better prediction",
    "fine-tuning": "further training of a pretrained model on a smaller, targeted dataset",
    "a reward model": "a model trained on human comparisons to score how good an answer is",
    "a checkpoint": "a saved copy of a model's weights and training state at one step",
    "a learning rate": "the step size an optimiser uses when updating the weights",
    "an epoch": "one full pass over a training dataset",
    "a manifest": "a small file listing the outputs of a job, with counts and checksums",
    "language identification": "detecting which human language a text is written in",
    "boilerplate": "navigation, footers and other page text that is not the main content",
    "a batch": "a group of examples processed together in one training step",
    "overfitting": "learning the training examples so closely that new examples get worse",
    "a prompt": "the text given to a model for it to continue or answer",
}
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WORDS = [
    "curate",
    "shard",
    "token",
    "river",
    "lantern",
    "garden",
    "signal",
    "harbor",
    "meadow",
    "copper",
    "window",
    "pebble",
    "forest",
    "planet",
    "candle",
    "bridge",
    "marble",
    "orchid",
    "violin",
    "castle",
    "pepper",
    "rocket",
    "tunnel",
    "wander",
    "silver",
    "kettle",
    "ladder",
    "mirror",
    "puzzle",
    "anchor",
]
UNITS = [
    ("minutes", "hours", 60),
    ("seconds", "minutes", 60),
    ("hours", "days", 24),
    ("days", "weeks", 7),
    ("months", "years", 12),
    ("centimetres", "metres", 100),
    ("grams", "kilograms", 1000),
]
RUDE = ["Figure it out yourself.", "Obviously.", "Why would you even ask that?", "Ugh, fine.", "Stop wasting my time."]


def arithmetic(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 40), rng.randint(2, 40)
    op = rng.choice(["+", "-", "*"])
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    word = {"+": "plus", "-": "minus", "*": "times"}[op]
    return f"What is {a} {word} {b}?", f"{a} {word} {b} is {value}.", str(value)


def conversion(rng: random.Random) -> tuple[str, str, str]:
    small, big, factor = rng.choice(UNITS)
    n = rng.randint(2, 12)
    return (f"How many {small} are in {n} {big}?", f"There are {n * factor} {small} in {n} {big}.", str(n * factor))


def capital(rng: random.Random) -> tuple[str, str, str]:
    country = rng.choice(sorted(CAPITALS))
    question = rng.choice(["What is the capital of {}?", "Which city is the capital of {}?"]).format(country)
    return question, f"The capital of {country} is {CAPITALS[country]}.", CAPITALS[country]


def definition(rng: random.Random) -> tuple[str, str, str]:
    term = rng.choice(sorted(DEFINITIONS))
    question = rng.choice(["What is {}?", "Can you explain what {} is?"]).format(term)
    return question, f"{term[0].upper()}{term[1:]} is {DEFINITIONS[term]}.", DEFINITIONS[term]


def weekday(rng: random.Random) -> tuple[str, str, str]:
    i, k = rng.randrange(7), rng.randint(1, 6)
    day = WEEKDAYS[(i + k) % 7]
    return (
        f"What day comes {k} day{'s' if k > 1 else ''} after {WEEKDAYS[i]}?",
        f"{k} day{'s' if k > 1 else ''} after {WEEKDAYS[i]} comes {day}.",
        day,
    )


def reverse_word(rng: random.Random) -> tuple[str, str, str]:
    w = rng.choice(WORDS)
    return f"Spell the word '{w}' backwards.", f"'{w}' spelled backwards is '{w[::-1]}'.", w[::-1]


MAKERS = [arithmetic, conversion, capital, definition, weekday, reverse_word]


def examples(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str, str]]:
    """``n`` distinct (prompt, answer, key fact) triples not already in ``seen``."""
    out: list[tuple[str, str, str]] = []
    turn = 0
    while len(out) < n:
        maker = MAKERS[turn % len(MAKERS)]
        turn += 1
        # A template whose questions are used up is skipped after a few tries.
        for _ in range(50):
            p, a, key = maker(rng)
            if p not in seen:
                seen.add(p)
                out.append((p, a, key))
                break
    return out


def wrong_answer(prompt: str, answer: str, key: str, rng: random.Random) -> str:
    """The answer with its key fact replaced by a plausible wrong one."""
    if key.lstrip("-").isdigit():
        wrong = str(int(key) + rng.choice([-3, -2, -1, 1, 2, 5, 10]))
    elif key in CAPITALS.values():
        wrong = rng.choice(sorted(set(CAPITALS.values()) - {key}))
    elif key in WEEKDAYS:
        wrong = rng.choice([d for d in WEEKDAYS if d != key])
    elif key in DEFINITIONS.values():
        wrong = rng.choice(sorted(set(DEFINITIONS.values()) - {key}))
    else:
        wrong = key[1:] + key[0]
    return answer.replace(key, wrong, 1)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def main() -> None:
    rng = random.Random(SEED)
    seen: set[str] = set()
    system = "You are a concise, polite assistant."
    qa = examples(rng, 120, seen)
    sft_rows: list[dict] = []
    for i, (p, a, _) in enumerate(qa):
        if i % 10 == 9:  # some examples in the messages form, with a system turn
            sft_rows.append(
                {
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": p},
                        {"role": "assistant", "content": a},
                    ]
                }
            )
        else:
            sft_rows.append({"prompt": p, "response": a})
    write_jsonl(HERE / "sft" / "qa.jsonl", sft_rows)

    prompts = examples(rng, 48, seen)
    write_jsonl(HERE / "prompts.jsonl", [{"prompt": p} for p, _, _ in prompts])

    comparisons = []
    kinds = ["wrong", "truncated", "rude"]
    for i, (p, a, key) in enumerate(examples(rng, 120, seen)):
        kind = kinds[i % 3]
        if kind == "wrong":
            rejected = wrong_answer(p, a, key, rng)
        elif kind == "truncated":
            words = a.split()
            rejected = " ".join(words[: max(1, len(words) // 3)])
        else:
            rejected = rng.choice(RUDE)
        chosen = a if kind != "rude" else f"Happy to help! {a}"
        comparisons.append(
            {
                "prompt": p,
                "chosen": chosen,
                "rejected": rejected,
                "rater": "template",
                # The label this file was first published with (it lived in samples/ then); kept so
                # that a rerun reproduces samples/comparisons.jsonl byte for byte.
                "source": "samples/make_align_samples.py",
                "reason": {
                    "wrong": "rejected answer is wrong",
                    "truncated": "rejected answer is cut short",
                    "rude": "rejected answer is rude and unhelpful",
                }[kind],
            }
        )
    write_jsonl(HERE / "comparisons.jsonl", comparisons)
    print(f"wrote {len(sft_rows)} SFT examples, {len(prompts)} prompts, {len(comparisons)} comparisons")


if __name__ == "__main__":
    main()
