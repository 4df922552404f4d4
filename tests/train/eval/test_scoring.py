"""Log-likelihood scoring: equal to a direct computation, truncated from the left with the
continuation kept whole, and the same whatever the batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from curate.core.tasks import Item
from curate.core.tokenizer import ByteTokenizer
from train.eval.choice import prepare
from train.eval.scoring import Request, encode_pair, loglikelihoods, pair_request


def _score(model, requests, batch_size=4):
    return loglikelihoods(model, requests, batch_size=batch_size, device=torch.device("cpu"))


def test_loglikelihood_equals_direct_computation(tiny_lm, direct_loglik):
    model, tok, _ = tiny_lm
    pairs = [
        ("The capital of France is", " Paris"),
        ("The capital of France is", " a city with a very long name"),
        ("2 + 2 =", " 4"),
        ("Once upon a time", " there was a king."),
    ]
    requests, expected = [], []
    for context, continuation in pairs:
        ctx, cont = encode_pair(tok, context, continuation, [tok.eot_id])
        request, truncated = pair_request(ctx, cont, model.config.block_size)
        assert not truncated
        requests.append(request)
        expected.append(direct_loglik(model, ctx + cont, len(cont)))
    got = _score(model, requests)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert len(set(np.round(got, 4))) == len(pairs)  # distinct pairs, distinct scores


def test_continuation_tokens_only_and_trailing_space_moves():
    tok = ByteTokenizer()
    ctx, cont = encode_pair(tok, "Answer: ", "yes", [tok.eot_id])
    assert ctx == [tok.eot_id, *b"Answer:"]
    assert cont == list(b" yes")  # the context's trailing space belongs to the continuation


def test_long_context_cut_from_the_left_continuation_whole():
    context, continuation = list(range(100)), [900, 901, 902]
    request, truncated = pair_request(context, continuation, block_size=10)
    assert truncated
    assert len(request.inputs) == 10
    assert request.targets == (900, 901, 902)
    assert request.inputs == (*range(92, 100), 900, 901)  # the context's tail, then the continuation
    short, cut = pair_request([1, 2], [3], block_size=10)
    assert not cut and short == Request((1, 2), (3,))


def test_results_do_not_depend_on_batch_size(tiny_lm, write_task, toy_records, tmp_path):
    from curate.core.tasks import load_task

    model, tok, _ = tiny_lm
    task = load_task(write_task(tmp_path / "toy.jsonl", toy_records))
    prepared = prepare(task, tok, model.config.block_size, limit=None, shots=0, seed=0, chat=False)
    lengths = {len(r.inputs) for r in prepared.requests}
    assert len(lengths) > 3  # padding really happens
    one = _score(model, prepared.requests, batch_size=1)
    seven = _score(model, prepared.requests, batch_size=7)
    everything = _score(model, prepared.requests, batch_size=len(prepared.requests))
    np.testing.assert_allclose(one, seven, rtol=0, atol=1e-5)
    np.testing.assert_allclose(one, everything, rtol=0, atol=1e-5)
    assert list(np.argsort(one)) == list(np.argsort(seven))


def test_requests_sharing_an_input_share_a_forward_pass(tiny_lm, direct_loglik):
    model, _, _ = tiny_lm
    inputs = (256, 65, 66, 67)
    requests = [Request(inputs, (t,)) for t in (32, 65, 97, 120)]
    passes = []
    got = loglikelihoods(model, requests, batch_size=1, device=torch.device("cpu"), on_batch=lambda n: passes.append(n))
    assert passes == [4]  # one pass, four requests
    for request, value in zip(requests, got):
        assert value == pytest.approx(direct_loglik(model, [*inputs, *request.targets], 1), abs=1e-5)


def test_prepare_scores_every_choice_after_the_same_context(tiny_lm, direct_loglik):
    model, tok, _ = tiny_lm
    item = Item("toy", "a", "Sky colour:", (" blue", " green"), 0)

    class OneItem:
        name, source, licence, eval_split, fewshot_split = "toy", "", "", "test", None

        def items(self, split=None, limit=None):
            return iter([item])

    prepared = prepare(OneItem(), tok, model.config.block_size, limit=None, shots=0, seed=0, chat=False)
    assert prepared.spans == [(0, 2)]
    got = _score(model, prepared.requests)
    for (context, continuation), value in zip(item.requests(), got):
        ids = [tok.eot_id, *tok.encode(context), *tok.encode(continuation)]
        assert value == pytest.approx(direct_loglik(model, ids, len(continuation.encode())), abs=1e-5)
