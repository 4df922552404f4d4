"""Build ``samples/pairs.parquet``: a dozen answer pairs to try ``curate rate`` on.

The same schema ``curate train sample-pairs`` writes (``curate.core.comparisons.PAIRS_SCHEMA``):
``pair_id`` (a hash of prompt and both responses), ``prompt``, ``response_1``, ``response_2``,
``model``, ``meta``. Written for this project by hand: in each pair one answer is correct,
complete and gives an example, the other is wrong, vague or cut short; which one is
``response_1`` alternates by a fixed seed. Two pairs carry HTML and a ``<script>`` in the text,
to show that the page prints such answers as text. Deterministic: rerunning rewrites the same file.

    python tools/make_pairs.py            # writes samples/pairs.parquet
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent.parent / "samples"  # where the samples live
sys.path.insert(0, str(HERE.parent))
from curate.core.comparisons import PAIRS_SCHEMA  # noqa: E402

SEED = 20261128

# (prompt, better answer, worse answer)
PAIRS = [
    (
        "What does deduplication do to a web crawl?",
        "It removes pages whose text repeats text already kept, exactly or nearly. For example, the same "
        "news story syndicated on 40 sites is kept once, so the model does not see it 40 times.",
        "It makes the crawl better.",
    ),
    ("Convert 3 kilometres to metres.", "3 kilometres is 3 x 1000 = 3000 metres.", "3 kilometres is 300 metres."),
    (
        "How do I show a literal <b> tag in an HTML page?",
        "Escape the angle brackets: write &lt;b&gt; in the source and the browser shows <b> as text "
        "instead of starting bold text.",
        "Just type <b>bold</b> and it will appear as written.",
    ),
    (
        "Is this snippet safe to paste into a page? <script>alert('hi')</script>",
        "No. <script>alert('hi')</script> runs as JavaScript if inserted as HTML. Insert user text with "
        "textContent (or escape it) so it is shown, not executed.",
        "<script>window.__rated_xss = true; alert('pwned')</script><img src=x onerror=\"window.__rated_xss=1\">Yes.",
    ),
    (
        "What is a learning rate?",
        "The step size the optimiser uses when it updates the weights. Too high and training diverges; "
        "too low and it crawls. For example, AdamW on a small transformer often starts near 3e-4.",
        "A rate.",
    ),
    ("Name the weekday after Friday.", "Saturday.", "Thursday."),
    (
        "Write a Python expression for the sum of the squares of 1..10.",
        "sum(i * i for i in range(1, 11))  # = 385",
        "sum(range(10)) ** 2",
    ),
    (
        "Why split a dataset into shards?",
        "So work can run in parallel and resume after a failure: each shard is a separate file, so a "
        "crashed job redoes one shard, not the whole dataset.",
        "Because shards are",
    ),
    (
        "Explain perplexity in one sentence.",
        "Perplexity is the exponential of the average per-token loss, so a model with perplexity 10 is as "
        "unsure as if it picked among 10 equally likely next tokens.",
        "Perplexity is how perplexed you are when reading.",
    ),
    ("What is 17 x 6?", "17 x 6 = 102 (10 x 6 = 60, plus 7 x 6 = 42).", "17 x 6 = 112."),
    (
        "Give one reason to keep a manifest next to output files.",
        "It lists every output with its row count and checksum, so a later step can verify nothing is "
        "missing or truncated before it starts.",
        "Manifests are required by law.",
    ),
    (
        "Translate 'good morning' into French.",
        "Bonjour (literally 'good day'); it is used as the morning greeting.",
        "Bonsoir.",
    ),
]


def pair_id(prompt: str, first: str, second: str) -> str:
    return hashlib.sha256("\x00".join((prompt, first, second)).encode()).hexdigest()[:16]


def build() -> pa.Table:
    rng = random.Random(SEED)
    rows = []
    for index, (prompt, better, worse) in enumerate(PAIRS):
        first, second = (better, worse) if rng.random() < 0.5 else (worse, better)
        rows.append(
            {
                "pair_id": pair_id(prompt, first, second),
                "prompt": prompt,
                "response_1": first,
                "response_2": second,
                # The label first published (the script lived in samples/): a rerun reproduces
                # samples/pairs.parquet byte for byte.
                "model": "samples/make_pairs.py",
                "meta": json.dumps({"index": index, "better": 1 if first == better else 2}, sort_keys=True),
            }
        )
    return pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA)


def main() -> None:
    out = HERE / "pairs.parquet"
    pq.write_table(build(), out, compression="zstd")
    print(f"wrote {out} ({len(PAIRS)} pairs)")


if __name__ == "__main__":
    main()
