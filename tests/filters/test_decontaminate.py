"""The decontaminate filter: benchmark items planted in documents are found however they are
written, ordinary text is left alone, and the report counts what was found per task."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pytest

from curate.core.document import Document
from curate.core.errors import ConfigError
from curate.core.shards import ShardWriter, read_documents
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import filter as filter_stage
from curate.stages.filter.chain import load_chain_config
from filters.registry import build_chain, build_filter, merge_reports

LONG_Q = "In the year after the great flood, which of the three river towns rebuilt its old stone bridge first?"
SHORT_Q = "Which simple instrument measures the pressure of the atmosphere?"  # 9 words
SHORT_A = "A mercury barometer"  # with the question: 12 words, one short sequence
MILL_Q = "What did the committee decide about the old mill?"
MILL_A = "It voted to restore the old mill as a museum of local weaving history for visitors"  # 16 words
QUIZ = [
    {"id": "flood", "context": LONG_Q, "choices": ["Millbrook", "Ashford", "Coldwater"], "label": 0},
    {"id": "barometer", "context": SHORT_Q, "choices": [SHORT_A, "A wind vane", "A rain gauge"], "label": 0},
    {"id": "penguins", "context": "Where do penguins live?", "choices": ["Antarctica", "Iceland"], "label": 0},
    {"id": "mill", "context": MILL_Q, "choices": [MILL_A, "It sold the mill"], "label": 0},
]
PAINTER_Q = "Name the Dutch painter who cut off part of his own ear in a fit of despair in 1888."
TRIVIA = [{"q": PAINTER_Q, "opts": ["Rembrandt", "Vincent van Gogh"], "gold": "Vincent van Gogh", "key": "t1"}]

NOUNS = [
    "council",
    "harbour",
    "library",
    "orchard",
    "festival",
    "bakery",
    "railway",
    "meadow",
    "gallery",
    "bridge",
    "village",
    "clinic",
]
VERBS = ["opened", "repaired", "visited", "painted", "described", "welcomed", "moved", "funded", "reviewed", "planned"]
ADJS = ["new", "small", "busy", "quiet", "old", "local", "bright", "wooden", "northern", "famous"]


def article(seed: int, sentences: int = 60) -> str:
    """Generated prose, deterministic per seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        a, b = rng.sample(NOUNS, 2)
        out.append(
            f"The {rng.choice(ADJS)} {a} {rng.choice(VERBS)} the {rng.choice(ADJS)} {b} "
            f"after {rng.randint(2, 40)} {rng.choice(['days', 'weeks', 'years'])}."
        )
    return " ".join(out)


def write_tasks(folder: Path) -> None:
    """quiz.jsonl (the generic format) and trivia.toml (a field mapping over trivia_data.jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QUIZ))
    (folder / "trivia_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRIVIA))
    (folder / "trivia.toml").write_text(
        'file = "trivia_data.jsonl"\ncontext = "q"\nchoices = "opts"\nlabel = "gold"\nid = "key"\n'
    )


@pytest.fixture
def tasks(tmp_path) -> list[str]:
    write_tasks(tmp_path / "tasks")
    return [str(tmp_path / "tasks" / "quiz.jsonl"), str(tmp_path / "tasks" / "trivia.toml")]


def decon(tasks: list[str], **params):
    return build_filter({"name": "decontaminate", "tasks": tasks, **params})


def doc(text: str, i: str = "d") -> Document:
    return Document(id=i, text=text)


PLANTED = {
    "exact copy": LONG_Q,
    "re-cased": LONG_Q.upper(),
    "re-punctuated": "In the year after the “great flood” — which of the three river-towns rebuilt its "
    "old\u00a0stone   bridge\n\nfirst ??",
    "embedded in a long page": article(1) + "\n" + LONG_Q + "\n" + article(2),
    "question with its answer": f"Quiz time! {SHORT_Q} {SHORT_A}. Next question.",
    "question with its answer, re-written": f"{SHORT_Q.lower().rstrip('?')} — “a MERCURY barometer”",
    "long answer alone": f"News: {MILL_A.upper()}!",
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_items_are_found(tasks, name):
    f = decon(tasks)
    d = doc(PLANTED[name])
    assert f(d) == "quiz"
    assert d.scores["decontaminate.items"] == 1


def test_normalization_is_the_same_on_both_sides(tmp_path):
    # The benchmark text is the odd one here: full-width letters, a soft hyphen, curly quotes.
    odd = "Ｔhe farmer’s “wooden” plough\u00adshare broke — twice — before the harvest festival began in the valley."
    (tmp_path / "odd.jsonl").write_text(json.dumps({"context": odd, "choices": ["a", "b"], "label": 0}) + "\n")
    f = decon([str(tmp_path / "odd.jsonl")])
    assert (
        f(doc('the farmer\'s "wooden" ploughshare broke - twice - before the harvest festival began in the')) == "odd"
    )


UNRELATED = {
    "generated article": article(3, 200),
    "common short phrases": "In the year after the war, which of the towns grew fastest? The old stone bridge "
    "was rebuilt first, and the river towns held a festival. What did the committee decide? It voted.",
    "short question alone": f"{SHORT_Q} Nobody in the class knew.",
    "short answer alone": f"My grandfather kept {SHORT_A.lower()} in the hall for sixty years.",
    "question and answer apart": f"{SHORT_Q} Some say a thermometer, but it is {SHORT_A.lower()}.",
    "an item too short to match": "Where do penguins live? Antarctica, mostly, and a few other places.",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(UNRELATED))
def test_unrelated_text_is_left_alone(tasks, name):
    f = decon(tasks)
    d = doc(UNRELATED[name])
    assert f(d) is None
    assert "decontaminate.items" not in d.scores


def test_min_words_is_the_short_text_rule(tasks):
    text = f"{SHORT_Q} {SHORT_A}"  # 12 words
    assert decon(tasks, min_words=12)(doc(text)) == "quiz"
    assert decon(tasks, min_words=13)(doc(text)) is None  # = ngram: short texts never count
    # A shorter n makes the 12-word text long enough for its own n-grams.
    assert decon(tasks, ngram=10, min_words=10)(doc(f"... {SHORT_Q} {SHORT_A} ...")) == "quiz"


def test_annotate_keeps_the_document_with_the_would_be_reason(tasks):
    chain = build_chain([{"name": "decontaminate", "tasks": tasks, "mode": "annotate"}])
    d = doc(LONG_Q)
    assert chain.process(d) is None
    assert d.reject_reason == "decontaminate/quiz"
    report = chain.report()[0]
    assert report["would_drop"] == {"quiz": 1} and report["dropped"] == {}
    assert report["counters"] == {"docs.quiz": 1, "items.quiz": 1}


def test_report_counts_documents_and_distinct_items_per_task(tasks):
    chain = build_chain([{"name": "decontaminate", "tasks": tasks}])
    texts = [LONG_Q, f"Again: {LONG_Q}", f"{PAINTER_Q} Vincent van Gogh.", article(4), f"{SHORT_Q} {SHORT_A}"]
    reasons = [chain.process(doc(t, str(i))) for i, t in enumerate(texts)]
    assert reasons == ["decontaminate/quiz", "decontaminate/quiz", "decontaminate/trivia", None, "decontaminate/quiz"]
    report = chain.report()[0]
    assert report["dropped"] == {"quiz": 3, "trivia": 1}
    assert report["counters"] == {"docs.quiz": 3, "docs.trivia": 1, "items.quiz": 2, "items.trivia": 1}
    assert report["distinct"] == {"items.quiz": ["barometer", "flood"], "items.trivia": ["t1"]}
    # A second input finding one of the same items and a new one: the merge counts items once.
    chain.reset_stats()
    chain.process(doc(LONG_Q))
    chain.process(doc(f"{MILL_Q} {MILL_A}"))
    merged = merge_reports([[report], chain.report()])[0]
    assert merged["counters"]["items.quiz"] == 3 and merged["counters"]["docs.quiz"] == 5
    assert merged["distinct"]["items.quiz"] == ["barometer", "flood", "mill"]


def test_a_document_with_several_tasks_names_the_first_given(tasks):
    both = f"{PAINTER_Q} ... {LONG_Q}"
    f = decon(tasks)
    assert f(doc(both)) == "quiz"
    assert f.counters == {"docs.quiz": 1, "docs.trivia": 1}
    assert decon(list(reversed(tasks)))(doc(both)) == "trivia"


def test_stage_manifest_counts_items_over_all_inputs(tasks, tmp_path):
    inputs = []
    for n, texts in enumerate([[LONG_Q, article(5)], [f"{LONG_Q}!", f"{PAINTER_Q} Vincent van Gogh", article(6)]]):
        with ShardWriter(tmp_path / f"in{n}") as w:
            for i, t in enumerate(texts):
                w.write(Document(id=f"{n}-{i}", text=t))
        inputs.append(str(tmp_path / f"in{n}"))
    config = filter_stage.FilterConfig(chain={"filters": [{"name": "decontaminate", "tasks": tasks}]})
    ctx = StageContext(inputs, str(tmp_path / "out"), Executor("local", 2), progress=False)
    manifest = filter_stage.run(config, ctx)
    report = manifest["filters"][0]
    assert report["dropped"] == {"quiz": 2, "trivia": 1}
    assert report["counters"] == {"docs.quiz": 2, "docs.trivia": 1, "items.quiz": 1, "items.trivia": 1}
    assert report["distinct"] == {"items.quiz": ["flood"], "items.trivia": ["t1"]}
    assert sorted(d.id for d in read_documents([str(tmp_path / "out")])) == ["0-1", "1-2"]
    assert "decontaminate: in 5, dropped 3 (quiz=2, trivia=1)" in filter_stage.summarize_filters(manifest)


def test_task_files_in_a_chain_file_are_relative_to_it(tmp_path, monkeypatch):
    write_tasks(tmp_path / "chains" / "tasks")
    chain_file = tmp_path / "chains" / "chain.toml"
    chain_file.write_text(
        '[[filters]]\nname = "decontaminate"\ntasks = ["tasks/quiz.jsonl", "tasks/trivia.toml", "copa"]\n'
    )
    monkeypatch.chdir(tmp_path)
    spec = load_chain_config(str(chain_file))["filters"][0]
    folder = tmp_path / "chains" / "tasks"
    assert spec["tasks"] == [str(folder / "quiz.jsonl"), str(folder / "trivia.toml"), "copa"]
    f = build_chain([spec]).filters[0]
    assert f(doc(f"{PAINTER_Q} Vincent van Gogh")) == "trivia"
    assert f(doc("The man turned on the faucet. The toilet filled with water.")) == "copa"
    assert set(f.fingerprint()) == {
        "task_sha256.quiz.test",
        "task_sha256.trivia.test",
        "task_sha256.copa.validation",
        f"task_mapping_sha256.{folder / 'trivia.toml'}",
    }


def test_templates_shared_by_many_items_are_ignored(tmp_path):
    stem = "For which of these two scenarios does the main character do something clearly wrong today"
    rows = [
        {
            "id": f"s{i}",
            "context": f"{stem}? Scenario: I {verb} the neighbour's old red bicycle without asking.",
            "choices": ["Wrong", "Not wrong"],
            "label": 0,
        }
        for i, verb in enumerate(["took", "painted", "sold"])
    ]
    (tmp_path / "moral.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = decon([str(tmp_path / "moral.jsonl")], max_items_per_ngram=2)
    assert f(doc(f"A blog post asking: {stem}?")) is None
    d = doc(f"{stem}? Scenario: I painted the neighbour's old red bicycle without asking.")
    assert f(d) == "moral" and f.distinct == {"items.moral": {"s1"}}
    everything = decon([str(tmp_path / "moral.jsonl")], max_items_per_ngram=-1)
    assert everything(doc(f"{stem}?")) == "moral" and len(everything.distinct["items.moral"]) == 3


def test_bundled_tasks_by_default(tmp_path):
    from curate.core.tasks import BUNDLED

    f = build_filter({"name": "decontaminate"})
    assert f.tasks == ["core"]
    arc = next(BUNDLED["arc_easy"].items())
    mmlu = next(BUNDLED["mmlu"].items())
    page = article(7)
    assert f(doc(f"{page}\n{arc.texts[0]} {arc.texts[1 + arc.label]}\n{page}")) == "arc_easy"
    assert f(doc(f"{page}\n{mmlu.texts[0].upper()}\n")) == "mmlu"
    assert f(doc(article(8, 300))) is None
    assert f.distinct["items.arc_easy"] == {arc.id}
    # Other algebra questions share this one's first 13 words ("Find the degree for the given
    # field extension Q(sqrt(2), ..."): all of them are found.
    assert mmlu.id in f.distinct["items.mmlu"] and len(f.distinct["items.mmlu"]) <= 10


def test_a_pickled_filter_rebuilds_in_the_new_process(tasks):
    f = decon(tasks)
    assert f(doc(LONG_Q)) == "quiz"
    copy = pickle.loads(pickle.dumps(f))
    assert copy(doc(f"{PAINTER_Q} Vincent van Gogh")) == "trivia"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"ngram": 3}, "ngram"),
        ({"min_words": 20}, "min_words"),
        ({"max_items_per_ngram": 0}, "max_items_per_ngram"),
        ({"tasks": []}, "non-empty list"),
        ({"tasks": ["arc_eazy"]}, "unknown task 'arc_eazy'"),
        ({"tasks": ["missing.jsonl"]}, "missing.jsonl"),
        ({"tasks": ["copa", "copa.jsonl"]}, "two tasks are named 'copa'"),
        ({"tasks": "core"}, "tasks"),
        ({"mode": "drop"}, "mode"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path, monkeypatch, params, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copa.jsonl").write_text(json.dumps({"context": "x", "choices": ["a"], "label": 0}) + "\n")
    with pytest.raises(ConfigError, match=message) as err:
        build_filter({"name": "decontaminate", **params})
    assert "\n" not in str(err.value) and "decontaminate" in str(err.value)


def test_a_broken_task_file_is_named_when_the_index_is_built(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"context": "q", "choices": ["a"], "label": 0}\n{"context": 1}\n')
    f = decon([str(tmp_path / "bad.jsonl")])
    with pytest.raises(ConfigError, match=r"bad.jsonl:2") as err:
        f(doc(LONG_Q))
    assert "\n" not in str(err.value)


def test_matches_show_which_words_matched(tasks):
    from curate.core.text import token_hashes, tokenize_batch

    index = decon(tasks).index
    batch = tokenize_batch([f"Intro. {SHORT_Q} {SHORT_A}. Then {LONG_Q}"])
    spans = index.matches(token_hashes(batch))
    words = batch.tokens
    assert " ".join(words[spans[0][0] : spans[0][0] + spans[0][1]]) == (
        "which simple instrument measures the pressure of the atmosphere a mercury barometer"
    )
    long_words = len(tokenize_batch([LONG_Q]).tokens)
    assert [length for _, length in spans[1:]] == [13] * (long_words - 13 + 1)
    assert spans[1][0] == len(words) - long_words
