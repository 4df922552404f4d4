"""Multiple-choice metrics, few-shot prompts, Winogrande's partial scoring, the chat template
and user tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.core.errors import InputError
from curate.core.tasks import BUNDLED, load_task
from curate.core.tokenizer import ByteTokenizer
from train.chat import encode_prompt
from train.eval.choice import centered, core_mean, prepare, task_metrics
from train.eval.fewshot import FewShot, plain_contexts
from train.eval.scoring import loglikelihoods

BYTES = ByteTokenizer()


def _prepare(task, limit=None, shots=0, seed=0, chat=False, block_size=4096):
    return prepare(task, BYTES, block_size, limit=limit, shots=shots, seed=seed, chat=chat)


def test_acc_and_acc_norm_differ_where_choice_lengths_differ(tmp_path, write_task):
    records = [
        # Long right answer: less likely in total, more likely per byte.
        {"context": "Q1", "choices": ["a", "a much longer answer"], "label": 1},
        # Same character count, different byte count: per byte and per character disagree.
        {"context": "Q2", "choices": ["ééé", "abcde"], "label": 0},
    ]
    prepared = _prepare(load_task(write_task(tmp_path / "toy.jsonl", records)))
    assert prepared.continuation_bytes == [2, 21, 7, 6]  # " " + text, UTF-8
    assert prepared.continuation_chars == [2, 21, 4, 6]
    loglik = np.array([-3.0, -10.0, -4.0, -5.0])
    m = task_metrics(prepared, loglik)
    # item 1: acc picks "a" (wrong), per byte and per char pick the long answer (right)
    # item 2: acc and per byte (-0.57 > -0.83) pick "ééé" (right); per char (-1.0 < -0.83) does not
    assert (m["acc"], m["acc_norm"], m["acc_char"]) == (0.5, 1.0, 0.5)
    assert m["n"] == 2 and m["random"] == 0.5


def test_centered_accuracy_and_core_mean():
    assert centered(0.25, 0.25) == 0.0
    assert centered(1.0, 0.25) == 1.0
    assert centered(0.5, 0.25) == pytest.approx(1 / 3)
    assert centered(0.0, 0.5) == -1.0
    assert core_mean({"a": {"centered": 0.2}, "b": {"centered": -0.1}, "c": {"centered": 0.5}}) == pytest.approx(0.2)
    assert core_mean({}) is None


def test_centered_uses_the_items_own_number_of_choices(tmp_path, write_task):
    records = [
        {"context": "Q", "choices": ["a", "b"], "label": 0},
        {"context": "Q", "choices": ["a", "b", "c", "d"], "label": 0},
    ]
    prepared = _prepare(load_task(write_task(tmp_path / "toy.jsonl", records)))
    m = task_metrics(prepared, np.array([0.0, -1.0, -1.0, 0.0, -2.0, -3.0]))  # first right, second wrong
    assert m["random"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["centered"] == pytest.approx((0.5 - 0.375) / (1 - 0.375))


def test_fewshot_never_includes_the_item_and_is_reproducible(tmp_path, write_task, toy_records):
    task = load_task(write_task(tmp_path / "toy.jsonl", toy_records))
    shots = FewShot(task, 5, seed=7)
    assert shots.source == "other items of test"
    for position, item in enumerate(task.items()):
        examples = shots.examples(item, position)
        ids = [e.id for e in examples]
        assert len(ids) == 5 and len(set(ids)) == 5 and item.id not in ids
        assert ids == [e.id for e in FewShot(task, 5, seed=7).examples(item, position)]
        for context, _ in plain_contexts(item, examples):
            assert context.count("Question") == 6 and context.endswith(item.context)
    draws = {tuple(e.id for e in FewShot(task, 3, seed=s).examples(next(task.items()), 0)) for s in range(6)}
    assert len(draws) > 1  # the seed matters


def test_fewshot_prompts_do_not_depend_on_limit(tmp_path, write_task, toy_records):
    task = load_task(write_task(tmp_path / "toy.jsonl", toy_records))
    few = _prepare(task, limit=3, shots=2)
    every = _prepare(task, shots=2)
    assert few.requests == every.requests[: len(few.requests)]


def test_fewshot_examples_come_from_the_fewshot_split(tmp_path, write_task, toy_records):
    write_task(tmp_path / "dev.jsonl", [{**r, "id": f"dev{i}"} for i, r in enumerate(toy_records[:4])])
    write_task(tmp_path / "test.jsonl", toy_records)
    (tmp_path / "t.toml").write_text('file = "test.jsonl"\nfewshot_file = "dev.jsonl"\n')
    task = load_task(str(tmp_path / "t.toml"))
    shots = FewShot(task, 3, seed=0)
    for position, item in enumerate(task.items()):
        assert {e.id for e in shots.examples(item, position)} <= {"dev0", "dev1", "dev2", "dev3"}


def test_mmlu_fewshot_from_dev_same_subject_header_once():
    mmlu = BUNDLED["mmlu"]
    shots = FewShot(mmlu, 5, seed=0)
    assert shots.source == "dev"
    item = next(mmlu.items())
    examples = shots.examples(item, 0)
    subject = item.id.rsplit("-", 1)[0]
    assert len(examples) == 5 and all(e.id.rsplit("-", 1)[0] == subject for e in examples)
    context, continuation = plain_contexts(item, examples)[0]
    assert context.count("The following are multiple choice questions") == 1
    assert context.count("Answer:") == 6 and continuation == " A"
    assert context.endswith(item.context.split("\n\n", 1)[1])


def test_winogrande_partial_scoring_scores_the_shared_continuation(tiny_lm, direct_loglik):
    model, tok, _ = tiny_lm
    item = next(BUNDLED["winogrande"].items())
    prepared = prepare(BUNDLED["winogrande"], tok, model.config.block_size, limit=1, shots=0, seed=0, chat=False)
    first, second = prepared.requests
    assert first.targets == second.targets == tuple(tok.encode(item.choices[0]))
    assert first.inputs != second.inputs  # one context per option
    assert prepared.continuation_bytes[0] == prepared.continuation_bytes[1]
    got = loglikelihoods(model, prepared.requests, batch_size=2, device=torch.device("cpu"))
    for (context, continuation), value in zip(item.requests(), got):
        ids = [tok.eot_id, *tok.encode(context), *tok.encode(continuation)][-97:]
        assert value == pytest.approx(direct_loglik(model, ids, len(continuation.encode())), abs=1e-5)


def test_chat_wraps_the_context_as_the_user_turn(tmp_path, write_task, toy_records):
    task = load_task(write_task(tmp_path / "toy.jsonl", toy_records))
    prepared = _prepare(task, limit=1, chat=True)
    item = next(task.items())
    prompt = encode_prompt(item.context, BYTES)
    for request, choice in zip(prepared.requests, item.choices):
        assert request.targets == tuple(BYTES.encode(choice.lstrip()))
        assert list(request.inputs[: len(prompt)]) == prompt
    assert prepared.continuation_bytes == [len(c.lstrip().encode()) for c in item.choices]


def test_user_task_from_toml_mapping(tmp_path, write_task):
    records = [
        {"q": "Is fire hot", "opts": {"x": "yes", "y": "no"}, "gold": "yes", "key": "k1"},
        {"q": "Is ice hot", "opts": {"x": "yes", "y": "no"}, "gold": "no", "key": "k2"},
    ]
    flat = [
        {"q": r["q"], "a": r["opts"]["x"], "b": r["opts"]["y"], "gold": r["gold"], "key": r["key"]} for r in records
    ]
    write_task(tmp_path / "raw.jsonl", flat)
    (tmp_path / "mine.toml").write_text(
        'name = "hotness"\nfile = "raw.jsonl"\ntemplate = "Question: {q}?\\nAnswer:"\n'
        'choices = ["a", "b"]\nlabel = "gold"\nid = "key"\n'
    )
    task = load_task(str(tmp_path / "mine.toml"))
    prepared = _prepare(task)
    assert task.name == "hotness" and [i.id for i in prepared.items] == ["k1", "k2"]
    assert [i.label for i in prepared.items] == [0, 1]
    assert prepared.requests[0].targets == tuple(b" yes")


def test_an_item_with_one_choice_is_refused(tmp_path, write_task):
    task = load_task(write_task(tmp_path / "one.jsonl", [{"context": "Q", "choices": ["only"], "label": 0}]))
    with pytest.raises(InputError, match="needs at least 2 choices"):
        _prepare(task)
