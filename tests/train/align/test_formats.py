"""The data shapes people have, in small hand-written files shaped like the public data sets:
Alpaca (one JSON array), Dolly (JSONL), Anthropic HH-RLHF (gzipped JSONL of whole dialogues),
StackExchange-paired and UltraFeedback/TRL (Parquet as `datasets` writes it), TRL's
conversational JSONL; empty prompts or answers and lines that are not UTF-8 are skipped and
counted, never trained on."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core.comparisons import Unusable, comparison_from_row
from curate.core.errors import InputError
from curate.core.tokenizer import ByteTokenizer
from train.align.data import read_prompts, read_records
from train.align.formats import prompt_messages, sft_messages
from train.align.reward import load_pairs
from train.align.sft import load_sft_examples

TOK = ByteTokenizer()

# tatsu-lab/alpaca: alpaca_data.json is one JSON array, indented by 4, "input" often empty.
ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well. 2. Sleep. 3. Move."},
    {"instruction": "Translate into French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Write a haiku about rain.", "input": "", "output": ""},  # an empty answer
    {"instruction": "", "input": "", "output": "An answer to nothing."},  # an empty prompt
]
# databricks-dolly-15k.jsonl
DOLLY = [
    {
        "instruction": "When did Virgin Australia start operating?",
        "context": "Virgin Australia commenced services on 31 August 2000 as Virgin Blue.",
        "response": "Virgin Australia commenced services on 31 August 2000.",
        "category": "closed_qa",
    },
    {
        "instruction": "Which is a species of fish? Tope or Rope",
        "context": "",
        "response": "Tope",
        "category": "classification",
    },
]
# Anthropic/hh-rlhf: {"chosen", "rejected"}, whole dialogues differing in the last answer.
HH = [
    {
        "chosen": "\n\nHuman: What are some cuss words in english?\n\nAssistant: Here’s an incomplete list.\n\n"
        "Ass, dick, bugger\n\nHuman: What's your favorite one?\n\nAssistant: I haven't even thought about it.",
        "rejected": "\n\nHuman: What are some cuss words in english?\n\nAssistant: Here’s an incomplete list.\n\n"
        "Ass, dick, bugger\n\nHuman: What's your favorite one?\n\nAssistant: Ass.",
    },
    {
        "chosen": "\n\nHuman: What kind of noises did dinosaurs make?\n\nAssistant: Humans and dinosaurs didn’t live "
        "at the same time, so it’s hard to say.",
        "rejected": "\n\nHuman: What kind of noises did dinosaurs make?\n\nAssistant: I don't know.",
    },
    {  # the data set holds some whose last answer is empty
        "chosen": "\n\nHuman: Can you help me?\n\nAssistant: Of course, what do you need?",
        "rejected": "\n\nHuman: Can you help me?\n\nAssistant:",
    },
]


def write_jsonl(path: Path, rows: list[dict], opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_datasets_parquet(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    """Parquet the way `datasets` writes it: an explicit schema and its features as metadata."""
    features = {"info": {"features": {name: {"_type": "Value"} for name in schema.names}}}
    table = pa.Table.from_pylist(rows, schema=schema.with_metadata({b"huggingface": json.dumps(features).encode()}))
    pq.write_table(table, path)
    return path


def sft_texts(path: Path) -> tuple[list[list[dict]], dict[str, int]]:
    train, held, skipped = load_sft_examples(path, TOK, 512, 0.0)
    messages = [sft_messages(row) for _, row in read_records(path) if _usable(sft_messages, row)]
    assert len(train) + len(held) == len(messages)
    return messages, skipped.counts


def _usable(reader, row) -> bool:
    try:
        reader(row)
    except Unusable:
        return False
    return True


def test_alpaca_json_array(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(ALPACA, indent=4, ensure_ascii=False))
    messages, skipped = sft_texts(path)
    assert messages[0] == [
        {"role": "user", "content": "Give three tips for staying healthy."},
        {"role": "assistant", "content": "1. Eat well. 2. Sleep. 3. Move."},
    ]
    assert messages[1][0]["content"] == "Translate into French.\n\nGood morning"
    assert skipped == {"empty response": 1, "empty prompt": 1}


def test_dolly_jsonl(tmp_path):
    messages, skipped = sft_texts(write_jsonl(tmp_path / "databricks-dolly-15k.jsonl", DOLLY))
    assert messages[0][0]["content"].startswith("When did Virgin Australia start operating?\n\nVirgin Australia")
    assert messages[0][1]["content"] == "Virgin Australia commenced services on 31 August 2000."
    assert messages[1][0]["content"] == "Which is a species of fish? Tope or Rope" and not skipped


def test_sft_lines_that_are_not_utf8_are_skipped_and_counted(tmp_path):
    path = tmp_path / "qa.jsonl"
    good = json.dumps({"prompt": "2+2?", "response": "4"}).encode()
    bad = b'{"prompt": "caf\xe9?", "response": "yes"}'  # Latin-1, not UTF-8
    empty = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]})
    path.write_bytes(b"\n".join([good, bad, good, empty.encode()]) + b"\n")
    train, held, skipped = load_sft_examples(path, TOK, 512, 0.0)
    assert len(train) + len(held) == 2
    assert skipped.counts == {"not UTF-8 text": 1, "empty response": 1}
    assert skipped.first["not UTF-8 text"] == f"{path}:2 (byte 16: 0xe9)"
    assert any("not UTF-8 text" in line and ":2 (byte 16" in line for line in skipped.lines())


@pytest.mark.parametrize("gzipped", [False, True])
def test_hh_rlhf_dialogues_split_into_a_shared_prompt_and_two_answers(tmp_path, gzipped):
    path = tmp_path / ("train.jsonl.gz" if gzipped else "train.jsonl")
    write_jsonl(path, HH, gzip.open if gzipped else open)
    rows = [row for _, row in read_records(path)]
    prompt, chosen, rejected = comparison_from_row(rows[0])
    assert prompt == [
        {"role": "user", "content": "What are some cuss words in english?"},
        {"role": "assistant", "content": "Here’s an incomplete list.\n\nAss, dick, bugger"},
        {"role": "user", "content": "What's your favorite one?"},
    ]
    assert (chosen, rejected) == ("I haven't even thought about it.", "Ass.")
    assert comparison_from_row(rows[1])[0] == "What kind of noises did dinosaurs make?"  # one turn: a string
    train, held, skipped = load_pairs(path, TOK, 512, 0.0, 0.0)
    assert len(train) + len(held) == 2 and skipped.counts == {"empty rejected answer": 1}
    assert [p.messages for p in read_prompts(path)[0]][1] == [
        {"role": "user", "content": "What kind of noises did dinosaurs make?"}
    ]


def test_stack_exchange_paired_parquet(tmp_path):
    schema = pa.schema(
        [
            ("qid", pa.int64()),
            ("question", pa.string()),
            ("date", pa.string()),
            ("metadata", pa.list_(pa.string())),
            ("response_j", pa.string()),
            ("response_k", pa.string()),
        ]
    )
    rows = [
        {
            "qid": 12891264,
            "question": "I am using jQuery fileupload plugin and I want to do some custom jQuery stuff once fileupload is done",
            "date": "2012/10/15",
            "metadata": [
                "https://stackoverflow.com/questions/12891264",
                "https://stackoverflow.com",
                "https://stackoverflow.com/users/1479830/",
            ],
            "response_j": "If you check the example code you'll find the `done` callback.",
            "response_k": "Use `always` instead.",
        },
        {"qid": 2, "question": "Why?", "date": "2013/01/01", "metadata": [], "response_j": "", "response_k": "No."},
    ]
    path = write_datasets_parquet(tmp_path / "stack.parquet", rows, schema)
    train, held, skipped = load_pairs(path, TOK, 512, 0.0, 0.0)
    assert len(train) + len(held) == 1 and skipped.counts == {"empty chosen answer": 1}
    first = next(row for _, row in read_records(path))
    assert comparison_from_row(first) == (rows[0]["question"], rows[0]["response_j"], rows[0]["response_k"])
    assert prompt_messages(first) == [{"role": "user", "content": rows[0]["question"]}]


def test_trl_conversational_preferences_with_and_without_a_prompt(tmp_path):
    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.string()),
            ("chosen", pa.list_(message)),
            ("rejected", pa.list_(message)),
            ("score_chosen", pa.float64()),
            ("score_rejected", pa.float64()),
        ]
    )
    # HuggingFaceH4/ultrafeedback_binarized: a prompt string, and both dialogues in full.
    q = "How many helicopters can a human eat in one sitting?"
    rows = [
        {
            "prompt": q,
            "chosen": [
                {"content": q, "role": "user"},
                {"content": "None: helicopters are not food.", "role": "assistant"},
            ],
            "rejected": [{"content": q, "role": "user"}, {"content": "About three.", "role": "assistant"}],
            "score_chosen": 10.0,
            "score_rejected": 1.0,
        }
    ]
    path = write_datasets_parquet(tmp_path / "ultrafeedback.parquet", rows, schema)
    assert comparison_from_row(next(r for _, r in read_records(path))) == (
        q,
        "None: helicopters are not food.",
        "About three.",
    )
    # trl-lib style: an explicit prompt as a message list, one assistant message per side.
    explicit = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What color is the sky?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    }
    implicit_mismatch = {
        "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        "rejected": [{"role": "user", "content": "other"}, {"role": "assistant", "content": "c"}],
    }
    jsonl = write_jsonl(tmp_path / "trl.jsonl", [explicit, implicit_mismatch, {"chosen": "x", "rejected": "y"}])
    train, held, skipped = load_pairs(jsonl, TOK, 512, 0.0, 0.0)
    assert len(train) + len(held) == 1
    assert skipped.counts.keys() == {
        "chosen and rejected do not share a prompt",
        "chosen/rejected text without a prompt must be a Human:/Assistant: dialogue; needs prompt/chosen/rejected, "
        "question/response_j/response_k, or chosen/rejected dialogues (message lists, or Human:/Assistant: text)",
    }
    assert comparison_from_row(explicit)[0] == explicit["prompt"]
    prompts, skipped = read_prompts(jsonl)
    assert [p.text for p in prompts] == ["What color is the sky?"] and skipped.total == 2


def test_preference_lines_that_are_not_utf8_or_have_empty_answers_are_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    row = {"prompt": "p", "chosen": "good", "rejected": "bad"}
    lines = [json.dumps(row).encode(), b'{"prompt": "\xff", "chosen": "a", "rejected": "b"}']
    lines.append(json.dumps({**row, "prompt": "  "}).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    train, held, skipped = load_pairs(path, TOK, 512, 0.0, 0.0)
    assert len(train) + len(held) == 1
    assert skipped.counts == {"not UTF-8 text": 1, "empty prompt": 1}


def test_a_json_array_with_a_bad_byte_or_broken_syntax(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'[{"prompt": "a", "response": "b"},\n {"prompt": "\xff", "response": "c"}, 3]')
    rows = list(read_records(path))
    assert [r.get("__error__") for _, r in rows] == [None, "not UTF-8 text", "not a JSON object"]
    path.write_text('[{"prompt": "a", "response": "b"},')
    with pytest.raises(InputError, match=r"a\.json: invalid JSON array \(Expecting value at line 1"):
        list(read_records(path))


def test_sft_and_dpo_commands_train_on_alpaca_and_hh_files(tmp_path, tiny_checkpoint):
    base = tiny_checkpoint(tmp_path / "base", block_size=96)
    alpaca = tmp_path / "alpaca_data.json"
    alpaca.write_text(json.dumps(ALPACA * 3, indent=4))
    common = ["--device", "cpu", "--quiet", "--steps", "2", "--batch-size", "2"]
    result = CliRunner().invoke(
        cli, ["train", "sft", "--base", str(base), "--data", str(alpaca), "-o", str(tmp_path / "sft"), *common]
    )
    assert result.exit_code == 0, result.output
    assert "note: skipped 3 record(s): empty response" in result.output
    assert "sft: steps 0 -> 2 of 2" in result.output
    hh = write_jsonl(tmp_path / "hh.jsonl", HH * 3)
    result = CliRunner().invoke(
        cli,
        ["train", "dpo", "--policy", str(tmp_path / "sft"), "--data", str(hh), "-o", str(tmp_path / "dpo"), *common],
    )
    assert result.exit_code == 0, result.output
    assert "skipped 3 record(s): empty rejected answer" in result.output and "dpo: steps 0 -> 2 of 2" in result.output


def test_score_reads_the_same_shapes():
    from train.align.score import row_fields

    kind, (prompt, chosen, rejected) = row_fields(HH[1])
    assert chosen.startswith("Humans and dinosaurs")
    assert kind == "comparisons" and prompt == "What kind of noises did dinosaurs make?" and rejected == "I don't know."
    assert row_fields(ALPACA[1]) == ("responses", ("Translate into French.\n\nGood morning", "Bonjour"))
    assert row_fields(DOLLY[1]) == ("responses", ("Which is a species of fish? Tope or Rope", "Tope"))
    assert row_fields({"prompt": "p", "response": "r", "system": "s"}) == ("responses", ("p", "r"))  # as before
    for row, reason in [
        ({"prompt": "p", "response": ""}, "empty response"),
        (HH[2], "empty rejected answer"),
        ({"text": "hello"}, r"needs prompt \+ response"),
        ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]}, "the last turn"),
    ]:
        with pytest.raises(Unusable, match=reason):
            row_fields(row)


def test_a_lone_surrogate_escape_is_counted_not_a_crash(tmp_path):
    path = tmp_path / "qa.jsonl"
    lines = ['{"prompt": "hi \\ud800", "response": "ok"}', json.dumps({"prompt": "2+2?", "response": "4"})]
    path.write_text("\n".join(lines) + "\n")
    train, held, skipped = load_sft_examples(path, TOK, 512, 0.0)
    assert len(train) + len(held) == 1 and skipped.counts == {"not UTF-8 text": 1}
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        '{"prompt": "q", "chosen": "a \\udfff", "rejected": "b"}',
        json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}),
    ]
    pairs.write_text("\n".join(rows) + "\n")
    train, held, skipped = load_pairs(pairs, TOK, 512, 0.0, 0.0)
    assert len(train) + len(held) == 1 and skipped.counts == {"not UTF-8 text": 1}


def test_dolly_rows_beside_alpaca_rows_in_one_parquet_file(tmp_path):
    """datasets writes the union of the columns: a Dolly row has a null `output`."""
    rows = [
        {"instruction": "Add.", "input": "2+2", "output": "4", "context": None, "response": None},
        {"instruction": "Name a fish.", "input": None, "output": None, "context": "Tope or Rope", "response": "Tope"},
    ]
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    messages, skipped = sft_texts(path)
    assert not skipped and [m[1]["content"] for m in messages] == ["4", "Tope"]
    assert messages[1][0]["content"] == "Name a fish.\n\nTope or Rope"
