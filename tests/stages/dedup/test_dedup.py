"""curate.stages.dedup (run(config, ctx)): accuracy on planted near duplicates, representatives, determinism across
workers and memory budgets, accounting, resume and bad inputs."""

from __future__ import annotations

import glob
import importlib
import json
import os
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.core.document import Document
from curate.core.errors import CurateError
from curate.core.files import sha256_file
from curate.core.shards import ShardWriter
from curate.runtime.executor import Executor
from curate.runtime.stage import StageContext
from curate.stages import dedup as dedup_stage
from curate.stages.dedup import DEFAULT_MEMORY_GB, DedupConfig
from curate.stages.dedup.index import KeyIndex, UnionFind
from curate.stages.dedup.inputs import inspect_inputs
from curate.stages.dedup.minhash import MinHasher, estimated_jaccard, shingles
from curate.stages.dedup.plan import plan_dedup

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MEMORY = int(DEFAULT_MEMORY_GB * 1024**3)


def dedup(inputs, out, config=None, *, workers=1, memory_bytes=MEMORY, overwrite=False, log=None) -> dict:
    """The stage through its entry point, quietly (``log``: where its notes go); the manifest."""
    ctx = StageContext(
        list(inputs),
        str(out),
        Executor("local", workers),
        overwrite=overwrite,
        progress=False,
        memory_bytes=memory_bytes,
    )
    if log is not None:
        ctx.log = log
    return dedup_stage.run(config or DedupConfig(), ctx)


# --------------------------------------------------------------------------- helpers


def _vocab(rng: random.Random, n: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    # sorted: a set's order depends on the per-process string hash seed
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(n)})


def _base_text(rng: random.Random, vocab: list[str]) -> list[str]:
    return [rng.choice(vocab) for _ in range(rng.randint(150, 450))]


def _paragraphs(words: list[str], size: int = 40) -> str:
    return "\n\n".join(" ".join(words[i : i + size]) for i in range(0, len(words), size))


def _variant(rng: random.Random, words: list[str], vocab: list[str], kind: str) -> str:
    w = list(words)
    strength = rng.random() ** 2  # most variants light, a tail of heavy ones
    if kind == "edit":
        for _ in range(1 + int(strength * len(w) * 0.25)):
            w[rng.randrange(len(w))] = rng.choice(vocab)
    elif kind == "insert":
        for _ in range(1 + int(strength * len(w) * 0.25)):
            w.insert(rng.randrange(len(w)), rng.choice(vocab))
    elif kind == "delete":
        for _ in range(1 + int(strength * len(w) * 0.25)):
            del w[rng.randrange(len(w))]
    elif kind == "boilerplate":
        w += [
            "Subscribe",
            "to",
            "our",
            "newsletter",
            "for",
            "more",
            "stories",
            "like",
            "this",
            "one",
            "and",
            "follow",
            "us",
            "on",
            "social",
            "media",
        ]
        w += [rng.choice(vocab) for _ in range(int(strength * 60))]
    elif kind == "reorder":
        paras = [w[i : i + 40] for i in range(0, len(w), 40)]
        rng.shuffle(paras)
        w = [x for p in paras for x in p]
    elif kind == "truncate":
        w = w[: max(20, int(len(w) * (1 - 0.8 * strength)))]
    # Surface noise that normalization must see through.
    text = _paragraphs(w)
    if rng.random() < 0.5:
        text = text.replace(" ", "  ").upper()
    return text


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(shingles(a)), set(shingles(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _write(path, docs: list[Document], row_group_bytes: int = 1 << 20) -> None:
    with ShardWriter(path, prefix="part-00000", row_group_bytes=row_group_bytes) as w:
        for d in docs:
            w.write(d)


def _read(directory) -> list[dict]:
    files = sorted(glob.glob(os.path.join(directory, "*.parquet")))
    rows = []
    for f in files:
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def _digest(directory) -> list[tuple[str, str]]:
    return [
        (os.path.relpath(f, directory), sha256_file(f))
        for f in sorted(
            glob.glob(os.path.join(directory, "*.parquet")) + glob.glob(os.path.join(directory, "removed", "*.parquet"))
        )
    ]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """300 unrelated base documents and one planted variant of each, with true Jaccard."""
    rng = random.Random(1234)
    vocab = _vocab(rng)
    kinds = ["edit", "insert", "delete", "boilerplate", "reorder", "truncate"]
    docs, pairs = [], []
    for i in range(300):
        words = _base_text(rng, vocab)
        base = Document(
            id=f"b{i:04d}",
            text=_paragraphs(words),
            url=f"https://site{i % 13}.org/{i}",
            date=T0 + timedelta(days=i % 50),
        )
        variant_text = _variant(rng, words, vocab, kinds[i % len(kinds)])
        var = Document(
            id=f"v{i:04d}",
            text=variant_text,
            url=f"https://mirror{i % 5}.net/{i}",
            date=T0 + timedelta(days=100 + i % 50),
        )
        docs += [base, var]
        pairs.append((base.id, var.id, _jaccard(base.text, var.text), kinds[i % len(kinds)]))
    rng.shuffle(docs)
    src = tmp_path_factory.mktemp("planted") / "in"
    _write(src, docs, row_group_bytes=60_000)  # several row groups -> several worker tasks
    return {"dir": str(src), "docs": {d.id: d for d in docs}, "pairs": pairs}


# --------------------------------------------------------------------------- accuracy


def test_planted_near_duplicates_recall_and_no_false_merges(planted, tmp_path):
    result = dedup([planted["dir"]], str(tmp_path / "out"), DedupConfig(), workers=1)
    removed = {r["id"]: r for r in _read(tmp_path / "out" / "removed")}
    pairs = planted["pairs"]
    high = [p for p in pairs if p[2] >= 0.9]
    low = [p for p in pairs if p[2] < 0.5]
    assert len(high) >= 60 and len(low) >= 30, (len(high), len(low))  # the test set covers both ends

    def merged(a: str, b: str) -> bool:
        return removed.get(b, {}).get("dup_of") == a or removed.get(a, {}).get("dup_of") == b

    caught = sum(merged(a, b) for a, b, _, _ in high)
    assert caught / len(high) >= 0.95, f"recall at J>=0.9: {caught}/{len(high)}"
    assert not [p for p in low if merged(p[0], p[1])]
    # Every removal is a true near duplicate of the document that represents it.
    docs = planted["docs"]
    for rid, row in removed.items():
        assert row["dup_kind"] in ("near", "exact")
        assert _jaccard(docs[rid].text, docs[row["dup_of"]].text) >= 0.5, rid
        assert row["dup_similarity"] >= 0.8
    # Bases are older than their variants: the base is the one kept.
    assert all(not r.startswith("b") for r in removed)
    c = result["counts"]
    assert c["read"] == 600 and c["read"] == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())
    assert result["outputs"]["removed"]["rows"] == len(removed)


def test_same_output_whatever_workers_and_memory(planted, tmp_path):
    runs = {}
    for name, workers, memory in (("w1", 1, 4 << 30), ("w2", 2, 4 << 30), ("disk", 2, 50_000)):
        out = tmp_path / name
        result = dedup([planted["dir"]], str(out), DedupConfig(url=True), workers=workers, memory_bytes=memory)
        runs[name] = (_digest(out), result)
    assert runs["w1"][0] == runs["w2"][0] == runs["disk"][0]
    assert runs["w1"][1]["counts"] == runs["disk"][1]["counts"]
    assert runs["w1"][1]["clusters"] == runs["disk"][1]["clusters"]
    # Each distinct candidate pair counted (and verified) once, however many partitions of the
    # band index its documents share bands in.
    assert runs["w1"][1]["pairs"] == runs["disk"][1]["pairs"]
    # The tiny budget really went out of core; the large one did not.
    assert runs["disk"][1]["memory"]["partitions"]["band"] > 1 and runs["disk"][1]["memory"]["spilled_bytes"] > 0
    assert runs["w1"][1]["memory"]["partitions"] == {"exact": 1, "url": 1, "band": 1}


# --------------------------------------------------------------------------- rules


def _doc(id_: str, text: str, day: int = 1, quality: float | None = None, url: str | None = None) -> Document:
    return Document(
        id=id_, text=text, url=url or f"https://example.com/{id_}", date=T0 + timedelta(days=day), quality_score=quality
    )


LOREM = " ".join(f"word{i}" for i in range(120))


def test_exact_duplicates_and_representative_rule(tmp_path):
    docs = [
        _doc("c", LOREM, day=5),
        _doc("a", LOREM.upper() + " !!!", day=3),  # earliest: kept
        _doc("b", "  " + LOREM.replace(" ", "\n"), day=4),
        _doc("q1", "other text " + LOREM, day=1, quality=0.2),
        _doc("q2", "Other, text! " + LOREM, day=1, quality=0.9),  # same date, higher quality: kept
        _doc("z", "third story " + LOREM, day=2),
        _doc("y", "THIRD STORY " + LOREM, day=2),  # same date and quality: smaller id kept
        _doc("u", "a unique document about something else entirely", day=1),
    ]
    _write(tmp_path / "in", docs)
    dedup([str(tmp_path / "in")], str(tmp_path / "out"), DedupConfig(near=False))
    removed = {r["id"]: (r["dup_of"], r["dup_kind"], r["dup_similarity"]) for r in _read(tmp_path / "out" / "removed")}
    assert removed == {
        "c": ("a", "exact", 1.0),
        "b": ("a", "exact", 1.0),
        "q1": ("q2", "exact", 1.0),
        "z": ("y", "exact", 1.0),
    }
    kept = [r["id"] for r in _read(tmp_path / "out")]
    assert kept == ["a", "q2", "y", "u"]  # input order


def _url_chain_docs():
    """Two fetches of one URL, and a document with an exact copy and an older near copy."""
    near_words = LOREM.split()
    near_words[60] = "changed"
    return [
        _doc("old", "first version of the news story", day=1, url="http://www.news.com/story/"),
        _doc("new", "second version of the news story with an update", day=9, url="https://news.com/story#top"),
        _doc("orig", LOREM, day=2, url="https://blog.com/p"),
        _doc("copy", LOREM.upper(), day=3, url="https://copy.com/p"),
        _doc("near", " ".join(near_words), day=0, url="https://first.com/p"),  # oldest near copy of orig
    ]


def test_url_dedup_keeps_newest_and_chains_resolve(tmp_path):
    docs = _url_chain_docs()
    _write(tmp_path / "in", docs)
    result = dedup([str(tmp_path / "in")], str(tmp_path / "out"), DedupConfig(url=True))
    removed = {r["id"]: (r["dup_of"], r["dup_kind"]) for r in _read(tmp_path / "out" / "removed")}
    # "copy" is an exact copy of "orig", which is itself a near copy of the older "near":
    # it points at the document that is actually kept.
    assert removed == {"old": ("new", "url"), "orig": ("near", "near"), "copy": ("near", "exact")}
    assert result["counts"]["rejected"] == {"exact": 1, "near": 1, "url": 1}
    top = result["clusters"][0]
    assert top["size"] == 3 and top["representative"] == "near" and top["representative_url"] == "https://first.com/p"


def test_transitive_chains_do_not_merge_dissimilar_documents(tmp_path):
    rng = random.Random(5)
    vocab = _vocab(rng, 5000)
    chain = [[rng.choice(vocab) for _ in range(400)]]
    for _ in range(5):  # each link ~0.8-0.85 Jaccard from the previous one, drifting away
        w = list(chain[-1])
        for _ in range(8):
            w[rng.randrange(len(w))] = rng.choice(vocab)
        chain.append(w)
    docs = [_doc(f"c{i}", " ".join(w), day=i) for i, w in enumerate(chain)]
    _write(tmp_path / "in", docs)
    dedup([str(tmp_path / "in")], str(tmp_path / "out"), DedupConfig(threshold=0.7))
    by_id = {d.id: d for d in docs}
    removed = _read(tmp_path / "out" / "removed")
    hasher = MinHasher()
    assert removed, "neighbours in the chain are duplicates"
    for r in removed:
        sig = hasher.signatures([by_id[r["id"]].text, by_id[r["dup_of"]].text]).signatures
        assert estimated_jaccard(sig[0], sig[1]) >= 0.7  # within the threshold of its representative
        assert r["dup_similarity"] >= 0.7
    assert _jaccard(docs[0].text, docs[-1].text) < 0.5
    assert len(_read(tmp_path / "out")) >= 2  # the chain's far end is kept


# --------------------------------------------------------------------------- robustness


def test_errors_are_counted_and_bad_input_is_skipped(tmp_path):
    import pyarrow as pa

    docs = [_doc("a", LOREM), _doc("b", LOREM), _doc("c", "something else entirely here")]
    _write(tmp_path / "in", docs)
    table = pa.table({"id": ["n1", "n2"], "text": pa.array([None, "a text"], pa.string())})
    pq.write_table(table, tmp_path / "in" / "part-00001-000.parquet")
    (tmp_path / "in" / "part-00002-000.parquet").write_bytes(b"PAR1 this is not parquet")
    m = dedup([str(tmp_path / "in")], str(tmp_path / "out"))
    assert m["inputs_failed"] == 1 and m["complete"] is False
    assert [i["status"] for i in m["inputs"]] == ["done", "done_with_errors", "failed"]
    # The null text is one error (file and row named); the unreadable file one more.
    c = m["counts"]
    assert c["read"] == 6 and c["errors"] == {"null_text": 1, "unreadable_file": 1}
    example = {"file": str(tmp_path / "in" / "part-00001-000.parquet"), "row": 0, "id": "n1"}
    assert c["error_examples"]["null_text"] == [example]
    assert c["error_examples"]["unreadable_file"][0]["file"].endswith("part-00002-000.parquet")
    assert c["rejected"] == {"exact": 1} and c["kept"] == 3
    # No readable input at all: still a manifest counting it (the command exits 1, like filter).
    alone = dedup([str(tmp_path / "in" / "part-00002-000.parquet")], str(tmp_path / "out2"))
    assert alone["inputs_failed"] == 1 and alone["counts"]["read"] == 1 and alone["counts"]["kept"] == 0
    assert alone["counts"]["errors"] == {"unreadable_file": 1} and _read(tmp_path / "out2") == []


def test_rerun_is_a_noop_and_other_options_need_overwrite(tmp_path):
    _write(tmp_path / "in", [_doc("a", LOREM), _doc("b", LOREM)])
    out = str(tmp_path / "out")
    notes: list[str] = []
    first = dedup([str(tmp_path / "in")], out, log=notes.append)
    assert not notes
    before = _digest(out)
    again = dedup([str(tmp_path / "in")], out, workers=2, memory_bytes=10_000, log=notes.append)
    assert notes == [f"{out} is already complete for these inputs and options: nothing to do"]
    assert again["counts"] == first["counts"] and _digest(out) == before
    with pytest.raises(CurateError, match="--overwrite"):
        dedup([str(tmp_path / "in")], out, DedupConfig(threshold=0.9))
    redo = dedup([str(tmp_path / "in")], out, DedupConfig(threshold=0.9), overwrite=True, log=notes.append)
    assert len(notes) == 1 and redo["config"]["threshold"] == 0.9
    with pytest.raises(CurateError, match="inside the output"):
        dedup([out], out)


def test_killed_run_leaves_no_half_output_and_rerun_recovers(tmp_path, monkeypatch):
    rng = random.Random(9)
    vocab = _vocab(rng, 3000)
    texts = [" ".join(rng.choice(vocab) for _ in range(200)) for _ in range(30)]
    _write(tmp_path / "in", [_doc(f"d{i}", t) for i, t in enumerate(texts)] + [_doc("x", texts[3].upper())])
    out = tmp_path / "out"
    run_module = importlib.import_module("curate.stages.dedup.run")  # not the run function
    real_write = run_module.write_outputs

    def dying_write(*args):
        real_write(*args)  # all shards staged...
        raise KeyboardInterrupt  # ...then killed before the commit

    monkeypatch.setattr(run_module, "write_outputs", dying_write)
    with pytest.raises(KeyboardInterrupt):
        dedup([str(tmp_path / "in")], str(out), DedupConfig(shard_bytes=2000))
    assert not glob.glob(str(out / "*.parquet")) and not (out / "manifest.json").exists()
    monkeypatch.setattr(run_module, "write_outputs", real_write)
    notes: list[str] = []
    result = dedup([str(tmp_path / "in")], str(out), DedupConfig(shard_bytes=2000), log=notes.append)
    assert not notes and len(result["shards"]) > 1
    assert sum(s["rows"] for s in result["shards"]) == result["counts"]["kept"]
    assert not (out / ".curate" / "staging").exists() and not (out / ".curate" / "work").exists()
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"] == result["counts"]


def test_refuses_to_overwrite_other_output(tmp_path):
    _write(tmp_path / "in", [_doc("a", LOREM)])
    _write(tmp_path / "other", [_doc("z", "other")])
    with pytest.raises(CurateError, match="not written by `curate dedup`"):
        dedup([str(tmp_path / "in")], str(tmp_path / "other"))


# --------------------------------------------------------------------------- index and plan


def test_key_index_spilled_groups_equal_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, size=5000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    docs = np.arange(5000, dtype=np.int64)

    def grouped(memory):
        index = KeyIndex(tmp_path / str(memory), "k", memory, len(keys))
        for i in range(0, len(keys), 700):
            index.add(keys[i : i + 700], docs[i : i + 700])
        out = set()
        for d, g in index.groups():
            for cut in np.split(d, np.flatnonzero(np.diff(g)) + 1):
                assert (np.diff(cut) > 0).all()  # documents in increasing order
                out.add(tuple(cut.tolist()))
        index.close()
        return index.partitions, out

    parts_mem, mem = grouped(1 << 30)
    parts_disk, disk = grouped(4096)
    assert parts_mem == 1 and parts_disk > 1 and mem == disk and len(mem) == 50


def test_union_find_components():
    uf = UnionFind()
    uf.union_many(np.array([5, 1, 9, 7]), np.array([1, 3, 8, 8]))
    assert sorted(tuple(c.tolist()) for c in uf.components()) == [(1, 3, 5), (7, 8, 9)]


def test_plan_from_metadata(planted):
    infos = inspect_inputs(sorted(glob.glob(os.path.join(planted["dir"], "*.parquet"))))
    small = plan_dedup(infos, DedupConfig(), workers=2, memory_bytes=10_000, measure=False)
    big = plan_dedup(infos, DedupConfig(), workers=2, memory_bytes=1 << 30, measure=True)
    assert small.docs == big.docs == 600 and small.bands * small.rows <= 112
    assert small.partitions > 1 and big.partitions == 1 and small.disk_bytes > big.disk_bytes
    assert big.signature_rate > 0 and big.seconds > 0 and big.peak_memory > big.index_bytes
    text = "\n".join(big.lines())
    assert "peak memory" in text and "disk" in text and "time" in text


def test_input_failing_after_its_first_row_group_is_left_out_entirely(tmp_path):
    rng = random.Random(2)
    vocab = _vocab(rng, 2000)
    texts = [" ".join(rng.choice(vocab) for _ in range(300)) for _ in range(40)]
    docs = [_doc(f"a{i}", t) for i, t in enumerate(texts)]
    _write(tmp_path / "in", docs[:20], row_group_bytes=2_000)  # several row groups
    with ShardWriter(tmp_path / "in", prefix="part-00001") as w:
        for _i, d in enumerate(docs[20:]):
            w.write(d)
        w.write(Document(id="dup", text=texts[0], date=T0))
    path = tmp_path / "in" / "part-00000-000.parquet"
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups > 2
    column = meta.row_group(meta.num_row_groups - 1).column(meta.schema.names.index("text"))
    data = bytearray(path.read_bytes())
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + 64] = b"\xff" * 64  # corrupt the page header of the last row group's text
    path.write_bytes(bytes(data))
    m = dedup([str(tmp_path / "in")], str(tmp_path / "out"))
    assert [i["status"] for i in m["inputs"]] == ["failed", "done"] and "row group" in m["inputs"][0]["message"]
    # The readable row groups of the failed input neither count nor remove anything: the
    # input is one record read and one error.
    assert m["counts"]["read"] == 22 and m["counts"]["kept"] == 21 and m["counts"]["rejected"] == {}
    assert m["counts"]["errors"] == {"unreadable_file": 1}


def test_columns_of_another_kind_fail_their_input_before_anything_is_read(tmp_path):
    import pyarrow as pa

    docs = [_doc("a", LOREM), _doc("b", LOREM), _doc("c", "something else entirely here")]
    _write(tmp_path / "in", docs)
    d = tmp_path / "in"
    # Another kind of value than the schema's, seen from the footer alone: text as a map,
    # numbers as text (even when every value would parse), text as a date.
    pq.write_table(pa.table({"id": ["s1"], "text": [LOREM], "scores": ["q=1"]}), d / "part-00001-000.parquet")
    pq.write_table(pa.table({"id": ["n1"], "text": ["a fresh text"], "n_chars": ["12"]}), d / "part-00002-000.parquet")
    pq.write_table(pa.table({"id": ["t1"], "text": [LOREM], "date": ["yesterday"]}), d / "part-00003-000.parquet")
    # Lossless casts are fine: large strings, int32 offsets, nanosecond dates.
    ok = pa.table(
        {
            "id": pa.array(["ok1"], pa.large_string()),
            "text": pa.array(["another fresh document"], pa.large_string()),
            "warc_offset": pa.array([7], pa.int32()),
            "date": pa.array([T0.replace(tzinfo=None)], pa.timestamp("ns")),
        }
    )
    pq.write_table(ok, d / "part-00004-000.parquet")
    infos = inspect_inputs([str(d / f"part-0000{i}-000.parquet") for i in range(5)])
    assert [i.error_reason for i in infos] == [None, "bad_schema", "bad_schema", "bad_schema", None]
    m = dedup([str(d)], str(tmp_path / "out"))
    assert [i["status"] for i in m["inputs"]] == ["done", "failed", "failed", "failed", "done"]
    messages = [i.get("message", "") for i in m["inputs"]]
    assert messages[1] == "column 'scores' has type string, expected map<string, double>"
    assert messages[2] == "column 'n_chars' has type string, expected int64"
    assert messages[3] == "column 'date' has type string, expected timestamp[us, tz=UTC]"
    # The failed inputs remove nothing (their LOREM copies stay out); each is one error.
    c = m["counts"]
    assert c["read"] == 7 and c["kept"] == 3 and c["rejected"] == {"exact": 1} and c["errors"] == {"bad_schema": 3}
    files = [e["file"] for e in c["error_examples"]["bad_schema"]]
    assert files == [str(d / f"part-0000{i}-000.parquet") for i in (1, 2, 3)]
    assert m["inputs_failed"] == 3 and m["complete"] is False
    kept = {r["id"]: r for r in _read(tmp_path / "out")}
    assert set(kept) == {"a", "c", "ok1"} and kept["ok1"]["warc_offset"] == 7 and kept["ok1"]["date"] == T0


def test_a_value_out_of_its_column_range_fails_the_input_in_the_signature_pass(tmp_path):
    import pyarrow as pa

    _write(tmp_path / "in", [_doc("a", LOREM), _doc("b", "something else entirely here")])
    # int64 epochs are read as int32: the kind is right, this value does not fit.
    big = pa.table({"id": ["e1", "e2"], "text": [LOREM, "x y z"], "epoch": pa.array([1, 2**40], pa.int64())})
    pq.write_table(big, tmp_path / "in" / "part-00001-000.parquet")
    m = dedup([str(tmp_path / "in")], str(tmp_path / "out"))
    assert [i["status"] for i in m["inputs"]] == ["done", "failed"]
    assert "column 'epoch'" in m["inputs"][1]["message"] and "not in range" in m["inputs"][1]["message"]
    assert m["counts"]["errors"] == {"bad_schema": 1} and m["counts"]["rejected"] == {}


def test_same_input_given_twice_is_read_once(tmp_path):
    docs = [_doc("a", LOREM), _doc("b", "another text altogether"), _doc("c", "and a third one here")]
    _write(tmp_path / "in", docs)
    f = str(tmp_path / "in" / "part-00000-000.parquet")
    m = dedup(
        [f, f, str(tmp_path / "in"), str(tmp_path / "in" / "..") + "/in/*.parquet"],
        str(tmp_path / "out"),
    )
    assert [i["path"] for i in m["inputs"]] == [f]
    assert m["counts"]["read"] == 3 and m["counts"]["kept"] == 3 and m["counts"]["rejected"] == {}


# --------------------------------------------------------------------------- exact verification


def _edited_pair(seed: int, edits: int, vocab: list[str]) -> tuple[str, str]:
    """A 200-word text and a copy with ``edits`` words replaced, one per distinct 5-word slot
    (so the true Jaccard is close to (196 - 5e) / (196 + 5e); the tests measure it anyway)."""
    rng = random.Random(seed)
    words = [rng.choice(vocab) for _ in range(200)]
    slots = sorted(rng.sample(range(40), edits))
    variant = list(words)
    for slot in slots:
        variant[slot * 5 + rng.randrange(5) if slot < 39 else 195] = f"edit{seed}x{slot}"
    return " ".join(words), " ".join(variant)


def _find_pair(edits: int, estimate_above: bool) -> tuple[str, str, float]:
    """The first seed whose pair is an LSH candidate under both the estimate's and exact
    verification's bands, with its estimated Jaccard on the wanted side of 0.8 and its true
    Jaccard on the other (deterministic: the same pair every run)."""
    from curate.stages.dedup.lsh import band_keys

    vocab = _vocab(random.Random(77), 5000)
    hasher = MinHasher()
    band_settings = [DedupConfig().lsh(), DedupConfig(verify="exact").lsh()]
    for seed in range(2000):
        a, b = _edited_pair(seed, edits, vocab)
        sig = hasher.signatures([a, b]).signatures
        estimate = float(estimated_jaccard(sig[0], sig[1]))
        if (estimate >= 0.8) != estimate_above or (_jaccard(a, b) >= 0.8) == estimate_above:
            continue
        if all((keys[0] == keys[1]).any() for keys in (band_keys(sig, *br) for br in band_settings)):
            return a, b, estimate
    raise AssertionError("no such pair")


def _filler(n: int) -> list[Document]:
    rng = random.Random(31)
    vocab = _vocab(rng, 3000)
    return [_doc(f"f{i}", " ".join(rng.choice(vocab) for _ in range(120)), day=10 + i) for i in range(n)]


def test_exact_verify_catches_a_pair_the_estimate_misses(tmp_path):
    base, variant, estimate = _find_pair(edits=4, estimate_above=False)
    true_j = _jaccard(base, variant)
    assert 0.8 <= true_j < 0.85 and estimate < 0.8, (true_j, estimate)
    _write(tmp_path / "in", [_doc("base", base, day=1), _doc("variant", variant, day=2)] + _filler(6))
    est = dedup([str(tmp_path / "in")], str(tmp_path / "est"))
    assert est["counts"]["rejected"] == {} and not _read(tmp_path / "est" / "removed")
    ex = dedup([str(tmp_path / "in")], str(tmp_path / "ex"), DedupConfig(verify="exact"))
    removed = _read(tmp_path / "ex" / "removed")
    assert [(r["id"], r["dup_of"], r["dup_kind"]) for r in removed] == [("variant", "base", "near")]
    # dup_similarity is the true Jaccard, computed here on shingle strings independently.
    assert removed[0]["dup_similarity"] == pytest.approx(true_j, abs=1e-6)
    pairs = ex["pairs"]
    assert pairs["verify"] == "exact" and ex["lsh"]["verify"] == "exact"
    assert pairs["exact"]["accepted"] == 1 and pairs["exact"]["accepted_below_estimate"] == 1
    assert pairs["exact"]["documents_hashed"] == 2  # only the documents of candidate pairs
    assert ex["config"]["verify"] == "exact" and "verify" not in est["config"]
    c = ex["counts"]
    assert c["read"] == 8 == c["kept"] + sum(c["rejected"].values()) + sum(c["errors"].values())


def test_exact_verify_never_merges_below_the_threshold(tmp_path):
    base, variant, estimate = _find_pair(edits=5, estimate_above=True)
    true_j = _jaccard(base, variant)
    assert true_j < 0.8 <= estimate, (true_j, estimate)
    _write(tmp_path / "in", [_doc("base", base, day=1), _doc("variant", variant, day=2)] + _filler(4))
    dedup([str(tmp_path / "in")], str(tmp_path / "est"))
    assert [r["id"] for r in _read(tmp_path / "est" / "removed")] == ["variant"]  # the estimate merges it
    ex = dedup([str(tmp_path / "in")], str(tmp_path / "ex"), DedupConfig(verify="exact"))
    assert not _read(tmp_path / "ex" / "removed") and len(_read(tmp_path / "ex")) == 6
    assert ex["pairs"]["exact"]["rejected_above_estimate"] == 1
    assert ex["pairs"]["verified"] == 0


def test_exact_verify_on_planted_pairs_is_exact_and_deterministic(planted, tmp_path):
    runs = {}
    for name, workers, memory in (("big", 1, 4 << 30), ("again", 1, 4 << 30), ("tiny", 2, 24_000)):
        out = tmp_path / name
        result = dedup(
            [planted["dir"]],
            str(out),
            DedupConfig(verify="exact"),
            workers=workers,
            memory_bytes=memory,
        )
        runs[name] = (_digest(out), result)
    # Byte-identical whatever the workers and the memory budget (pairs in several partitions,
    # sets loaded in many small batches, a star cache that cannot hold a cluster).
    assert runs["big"][0] == runs["again"][0] == runs["tiny"][0]
    big, tiny = runs["big"][1]["pairs"]["exact"], runs["tiny"][1]["pairs"]["exact"]
    assert big["pair_partitions"] == 1 and big["batches"] == 1
    assert tiny["pair_partitions"] > 1 and tiny["batches"] > 4
    assert {k: v for k, v in big.items() if k not in ("pair_partitions", "batches")} == {
        k: v for k, v in tiny.items() if k not in ("pair_partitions", "batches")
    }
    docs = planted["docs"]
    removed = {r["id"]: r for r in _read(tmp_path / "big" / "removed")}
    for rid, row in removed.items():
        true_j = _jaccard(docs[rid].text, docs[row["dup_of"]].text)
        assert true_j >= 0.8 and row["dup_similarity"] == pytest.approx(true_j, abs=1e-6), rid
    merged = {(row["dup_of"], rid) for rid, row in removed.items()}
    above = [(a, b) for a, b, j, _ in planted["pairs"] if j >= 0.8]
    assert sum((a, b) in merged for a, b in above) / len(above) >= 0.95
    assert big["documents_hashed"] < len(docs)


def test_exact_verify_similarity_of_url_and_exact_chains(tmp_path):
    docs = _url_chain_docs()
    _write(tmp_path / "in", docs)
    dedup([str(tmp_path / "in")], str(tmp_path / "out"), DedupConfig(url=True, verify="exact"))
    by_id = {d.id: d.text for d in docs}
    removed = {r["id"]: r for r in _read(tmp_path / "out" / "removed")}
    assert {k: (r["dup_of"], r["dup_kind"]) for k, r in removed.items()} == {
        "old": ("new", "url"),
        "orig": ("near", "near"),
        "copy": ("near", "exact"),
    }
    for rid, row in removed.items():
        assert row["dup_similarity"] == pytest.approx(_jaccard(by_id[rid], by_id[row["dup_of"]]), abs=1e-6), rid


def test_verify_mode_is_checked():
    from curate.core.errors import ConfigError

    with pytest.raises(ConfigError, match="verify must be 'estimate' or 'exact'"):
        DedupConfig(verify="fuzzy").validate()
    assert "verify" not in DedupConfig().to_json() and DedupConfig(verify="exact").to_json()["verify"] == "exact"


def test_exact_verification_bands_lean_towards_recall():
    """Exact verification rejects false candidates cheaply, so its derived banding makes more
    pairs near the threshold candidates than the estimate's; explicit bands/rows still win."""
    from curate.stages.dedup.lsh import candidate_probability

    estimate, exact = DedupConfig().lsh(), DedupConfig(verify="exact").lsh()
    assert estimate[0] * estimate[1] <= 112 and exact[0] * exact[1] <= 112
    assert candidate_probability(0.8, *exact) > candidate_probability(0.8, *estimate) + 0.03
    assert candidate_probability(0.8, *exact) > 0.97
    assert DedupConfig(verify="exact", bands=14, rows=8).lsh() == (14, 8)


@pytest.mark.parametrize("verify", ["estimate", "exact"])
def test_inputs_holding_no_documents_give_empty_outputs(tmp_path, verify):
    """A 0-row Parquet file (which still has one, empty, row group) is a corpus of no documents,
    not a crash."""
    from curate.core.document import SCHEMA

    (tmp_path / "in").mkdir()
    pq.write_table(SCHEMA.empty_table(), tmp_path / "in" / "empty.parquet")
    result = dedup([str(tmp_path / "in")], str(tmp_path / "out"), DedupConfig(url=True, verify=verify))
    c = result["counts"]
    assert (c["read"], c["kept"], c["rejected"], c["errors"]) == (0, 0, {}, {})
    assert _read(tmp_path / "out") == [] and result["pairs"]["candidates"] == 0


def test_char_batches_cover_every_text_once_within_the_budget_and_errors_are_one_line():
    from curate.stages.dedup.inputs import BATCH_CHARS, char_batches, unreadable

    texts = ["a" * 400_000, "b" * 400_000, "c" * 400_000, "d" * 3_000_000, "", "e"]
    batches = list(char_batches(texts))
    assert [i for s, e in batches for i in range(s, e)] == list(range(len(texts)))
    assert all(e > s for s, e in batches)
    assert all(e - s == 1 or sum(map(len, texts[s:e])) <= BATCH_CHARS for s, e in batches)
    assert batches[:2] == [(0, 2), (2, 3)]
    reason, message = unreadable(
        "x.parquet", 3, OSError("Couldn't deserialize thrift\nDeserializing page header failed.\n")
    )
    assert reason == "unreadable_file"
    assert message == "x.parquet: row group 3 unreadable (OSError: Couldn't deserialize thrift)"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"threshold": 0.0}, "threshold = 0.0 is out of range; allowed: a number in (0, 1]"),
        ({"verify_threshold": 1.5}, "verify_threshold = 1.5 is out of range; allowed: a number in (0, 1]"),
        ({"seed": -1}, "seed = -1 is out of range; allowed: an integer in [0, 4294967295]"),
        ({"seed": 2**32}, "seed = 4294967296 is out of range"),
        ({"num_perm": 1}, "num_perm = 1 is out of range; allowed: an integer in [2, 4096]"),
        ({"ngram": 0}, "ngram = 0 is out of range; allowed: an integer >= 1"),
        ({"bands": 0, "rows": 4}, "bands = 0 is out of range; allowed: an integer >= 1"),
        ({"shard_bytes": 0}, "shard_bytes = 0 is out of range; allowed: an integer >= 1"),
    ],
)
def test_numeric_settings_are_range_checked(options, message):
    import re

    from curate.core.config import from_dict
    from curate.core.errors import ConfigError

    # Built in code (the command line) or from a table (the pipeline's [dedup]): the same check.
    with pytest.raises(ConfigError, match="^dedup: " + re.escape(message)):
        DedupConfig(**options).validate()
    with pytest.raises(ConfigError, match=r"^\[dedup\]: " + re.escape(message)):
        from_dict(DedupConfig, options, where="[dedup]")
