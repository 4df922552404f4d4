"""Writes the small non-web sources of samples/: papers/, conversations/ (books/ holds real
books: tools/make_books.py).

Everything here is written for this project: sentences are composed from the banks below with
a fixed seed, so running the script again gives byte-identical files. (samples/code/ holds
small hand-written programs and is not generated.)

    python tools/make_sources.py          # rewrites samples/papers, conversations
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "samples"  # where the samples live
SEED = 20261128

# --- books: short stories --------------------------------------------------------------

NAMES = ["Ada", "Tomas", "Mirela", "Oskar", "Hana", "Felix", "Ines", "Ravi", "Lotte", "Jonah", "Yara", "Emil"]
PLACES = [
    "the lighthouse at the end of the spit",
    "a bakery that never closed",
    "the river ferry",
    "an observatory above the town",
    "the last stop of the night tram",
    "a greenhouse full of lemons",
    "the archive under the old mill",
    "a village where clocks ran slow",
    "the glassworks by the harbour",
]
OBJECTS = [
    "a brass key",
    "a letter with no stamp",
    "a map drawn in pencil",
    "a jar of blue ink",
    "a broken compass",
    "a recipe in a child's hand",
    "a photograph of a stranger",
    "a tin of seeds",
]
OPENINGS = [
    "{name} had lived near {place} for eleven years before anything unusual happened.",
    "Nobody in the family could say when {name} first noticed {object}.",
    "The winter {name} turned thirty, the snow came early to {place}.",
    "It began, as most trouble did for {name}, with {object} left on the kitchen table.",
]
MIDDLES = [
    "{name} turned {object} over twice, as if the answer might be written on the underside.",
    "The wind came off the water in long grey sheets, and the shutters knocked like visitors.",
    "{friend} said it was nothing, which was what {friend} always said about important things.",
    "There was a smell of bread and wet wool, and somewhere a radio was playing an old waltz.",
    "For a week {name} asked everyone the same question and received a different answer each time.",
    "The road to {place} was longer in the dark, and {name} counted the lamps to keep from worrying.",
    "{friend} laughed, but the laugh ended too soon, and they both pretended not to notice.",
    "Rain gathered on the glass and ran down in crooked lines that looked almost like handwriting.",
    "{name} wrote a list of what was known, and it was shorter than the list of what was feared.",
    "At the market the fishmonger remembered {object}, and described the woman who had sold it.",
    "The old keeper of {place} kept a ledger of every visitor, and one page had been cut out.",
    "By morning the frost had drawn ferns on every window, and the town seemed to hold its breath.",
    "{name} slept badly and dreamed of doors that opened onto the same room again and again.",
    "{friend} arrived with soup and questions, and stayed long after both had gone cold.",
]
DIALOGUE = [
    '"You kept it all this time?" {friend} asked.\n\n"I did not know what else to do with it," said {name}.',
    '"If it matters so much, why did nobody mention it?"\n\n"Because," {friend} said slowly, "nobody wanted to be the first."',
    '"We could leave it," said {name}. "We could leave it where it was and go home."\n\n"We could," said {friend}. Neither of them moved.',
    '"Do you remember the summer of the flood?" asked {friend}.\n\n"Everyone remembers it," said {name}. "That is the problem."',
]
ENDINGS = [
    "In the end {name} put {object} back where it had been found, and the house was quiet again.",
    "{name} walked home along the shore, lighter than before, though nothing had really been solved.",
    "The next spring the lemons ripened early, and {name} decided to take that as an answer.",
    "{friend} kept the secret for the rest of their life, and {name} never asked for it back.",
]


def story(rng: random.Random, n_paragraphs: int) -> tuple[str, str]:
    name, friend = rng.sample(NAMES, 2)
    place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
    fill = {"name": name, "friend": friend, "place": place, "object": obj}
    title = f"{name} and the {obj.split(' ', 1)[1]}"
    paragraphs = [rng.choice(OPENINGS).format(**fill)]
    deck: list[str] = []  # sentences dealt without repeats until the bank runs out
    for i in range(n_paragraphs):
        if i % 3 == 2:
            paragraphs.append(rng.choice(DIALOGUE).format(**fill))
            continue
        sentences = []
        for _ in range(rng.randint(3, 5)):
            if not deck:
                deck = rng.sample(MIDDLES, len(MIDDLES))
            sentences.append(deck.pop().format(**fill))
        paragraphs.append(" ".join(sentences))
    paragraphs.append(rng.choice(ENDINGS).format(**fill))
    return title, "\n\n".join(paragraphs)


# --- papers: expository articles -----------------------------------------------------------

TOPICS = [
    ("soil moisture", "irrigation scheduling", "farm plots"),
    ("urban heat islands", "street tree placement", "city blocks"),
    ("battery ageing", "charging policies", "delivery bicycles"),
    ("queue length", "adaptive traffic signals", "intersections"),
    ("river sediment", "dredging intervals", "harbour channels"),
    ("indoor air quality", "ventilation control", "classrooms"),
    ("bird migration timing", "wind turbine curtailment", "coastal wind farms"),
    ("library book demand", "inventory rotation", "branch libraries"),
]
METHODS = [
    "a linear mixed-effects model with site as a random intercept",
    "gradient-boosted regression trees with monotone constraints",
    "a Bayesian hierarchical model fitted by Hamiltonian Monte Carlo",
    "a simple seasonal baseline and a small recurrent network",
]
PAPER_SENTENCES = [
    "Measurements were taken every {interval} minutes over {months} months at {n} {units}.",
    "Missing readings, about {missing}% of the total, were left missing rather than imputed.",
    "We held out the final {holdout} weeks of each series for evaluation.",
    "The baseline predicts the value observed at the same time one week earlier.",
    "All code and the cleaned data are released under a permissive license.",
    "Sensor drift was corrected against a reference instrument once a month.",
    "We report the mean absolute error and its bootstrap confidence interval.",
    "Results were stable across the three random seeds we tried.",
    "The largest errors occurred during sudden weather changes, which the model sees only rarely.",
    "A policy that reacts to the forecast rather than to the last reading reduced waste in every site.",
    "We caution that the {units} studied here are not a random sample of all {units}.",
    "Further work should test whether the gains persist over more than one year.",
]


def paper(rng: random.Random, topic: tuple[str, str, str]) -> tuple[str, str]:
    quantity, decision, units = topic
    fill = {
        "interval": rng.choice([5, 10, 15, 30]),
        "months": rng.randint(4, 18),
        "n": rng.randint(12, 240),
        "units": units,
        "missing": round(rng.uniform(0.5, 7.5), 1),
        "holdout": rng.randint(2, 8),
    }
    method = rng.choice(METHODS)
    gain = round(rng.uniform(8, 35), 1)
    title = f"Forecasting {quantity} to improve {decision} in {units}"
    abstract = (
        f"We study whether short-term forecasts of {quantity} can improve {decision}. Using data from "
        f"{fill['n']} {units}, we compare {method} against a seasonal baseline. The forecast-driven policy "
        f"reduces the mean absolute error by {gain}% relative to the baseline and changes decisions in "
        f"{rng.randint(10, 60)}% of cases. We describe the data, the method and its limits."
    )
    sections = {
        "Introduction": [
            f"Decisions about {decision} are usually made from the most recent observation of {quantity}.",
            f"Because {quantity} changes with the weather and with use, the most recent value is often a poor guide.",
            "We ask a narrow question: does a modest forecast, honestly evaluated, change what a careful operator would do?",
        ],
        "Data": rng.sample(PAPER_SENTENCES[:6], 4),
        "Method": [
            f"We fit {method}.",
            "Inputs are the previous day of readings, calendar features and the public weather forecast.",
            "Hyperparameters were chosen on the last month of the training period only.",
        ],
        "Results": [
            f"The model reduced the mean absolute error by {gain}% (95% interval {round(gain - 4.1, 1)} to {round(gain + 3.7, 1)}).",
            *rng.sample(PAPER_SENTENCES[6:], 3),
        ],
        "Limitations": rng.sample(PAPER_SENTENCES[9:], 2),
        "Conclusion": [
            f"Forecasts of {quantity} are cheap to produce and, in our data, useful for {decision}.",
            "We encourage operators to evaluate such forecasts on their own sites before relying on them.",
        ],
    }
    body = [f"# {title}", "## Abstract", abstract]
    for i, (name, sentences) in enumerate(sections.items(), start=1):
        body.append(f"## {i}. {name}")
        body.append(" ".join(s.format(**fill) for s in sentences))
    return title, "\n\n".join(body)


# --- conversations --------------------------------------------------------------------------

EXCHANGES = [
    (
        "How long should I rest bread dough?",
        "For a basic loaf, let it rise until roughly doubled, usually one to two hours at room temperature. "
        "A cooler kitchen just means a slower rise; poke the dough, and if the dent springs back slowly, it is ready.",
    ),
    (
        "Why does my Python loop get slower as the list grows?",
        "If you call list.remove or check `x in some_list` inside the loop, each call scans the list, so the total "
        "work grows with the square of its length. Use a set for membership tests, or build a new list instead of removing items.",
    ),
    (
        "What is a good way to learn a new language's grammar?",
        "Read short texts you mostly understand and notice one pattern at a time. Write a few sentences using it the "
        "same day. Grammar sticks when it is attached to sentences you have actually used.",
    ),
    (
        "Can you explain what a median is?",
        "Sort the numbers; the median is the one in the middle, or the average of the two middle ones when the count "
        "is even. Unlike the mean, it barely moves when one value is extremely large.",
    ),
    (
        "My tomato leaves are turning yellow from the bottom. What should I check?",
        "Lower leaves yellowing is often a sign of uneven watering or a lack of nitrogen. Water deeply but less often, "
        "remove the affected leaves, and add compost around the base.",
    ),
    (
        "How do I split a large CSV file without loading it all?",
        "Read it line by line and start a new output file every N lines, copying the header into each part. "
        "Streaming like this keeps memory flat no matter how big the input is.",
    ),
    (
        "What should I pack for a two-day hike?",
        "Layers rather than one heavy coat, a rain shell, enough water or a filter, simple food that needs no "
        "cooking, a map even if you have a phone, a headlamp, and a small first-aid kit.",
    ),
    (
        "Why do we round numbers when reporting results?",
        "Extra digits suggest more precision than the measurement has. Rounding to what you can defend makes a "
        "result easier to read and more honest about its uncertainty.",
    ),
]
FOLLOW_UPS = [
    (
        "Thanks. Is there anything I should avoid?",
        "Avoid changing several things at once; if you change one thing at a time you will know what helped.",
    ),
    (
        "Could you give me a short example?",
        "Sure. Start small, check the result, and only then repeat the step at full size.",
    ),
    (
        "That makes sense. How do I know it worked?",
        "Write down what you expect before you try it, then compare. A surprise is information, not failure.",
    ),
    (
        "Is this different for beginners?",
        "Only in pace. Beginners benefit from the same steps, taken more slowly and with more checking.",
    ),
]
SYSTEM = [
    "You are a patient assistant who answers briefly and plainly.",
    "You are a helpful assistant. Prefer practical advice over theory.",
]


def conversation(rng: random.Random, i: int) -> dict:
    question, answer = EXCHANGES[i % len(EXCHANGES)]
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SYSTEM)})
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    for q, a in rng.sample(FOLLOW_UPS, rng.randint(0, 2)):
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    day = date(2024, 1, 1) + timedelta(days=rng.randint(0, 365))
    return {"id": f"conv-{i:04d}", "date": day.isoformat(), "messages": messages}


def main() -> None:
    rng = random.Random(SEED)
    # The short stories samples/books once held (now real books, tools/make_books.py) are
    # still drawn, and dropped, so that the papers and conversations below stay byte-identical.
    for _ in range(8):
        story(rng, rng.randint(5, 8))
        rng.randint(0, 4 * 365)
    papers = HERE / "papers"
    papers.mkdir(exist_ok=True)
    for i, topic in enumerate(TOPICS):
        title, text = paper(rng, topic)
        day = date(2021, 1, 1) + timedelta(days=rng.randint(0, 3 * 365))
        (papers / f"paper-{i + 1:02d}.md").write_text(
            f"---\ntitle: {title}\ndate: {day.isoformat()}\nlanguage: en\n---\n\n{text}\n"
        )
    conv = HERE / "conversations"
    conv.mkdir(exist_ok=True)
    with open(conv / "conversations.jsonl", "w") as fh:
        for i in range(48):
            fh.write(json.dumps(conversation(rng, i), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
