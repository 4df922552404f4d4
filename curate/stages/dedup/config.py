"""The settings of ``curate dedup``, each with its one default: :class:`DedupConfig` (everything
that changes the result) and :data:`DEFAULT_MEMORY_GB` (the working-memory budget, which does not).

The command line takes its option defaults from here, and so does ``curate pipeline``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from curate.core.errors import ConfigError
from curate.core.ranges import SEED, SIZE, Range, check_bounds
from curate.core.shards import DEFAULT_SHARD_BYTES
from curate.stages.dedup.lsh import optimal_bands

# Memory for the key indexes (and a Ray task's partition) unless told otherwise; past it they
# spill to disk. Outputs do not depend on it.
DEFAULT_MEMORY_GB = 4.0

# Band selection weights: candidates are verified on their signatures before anything is
# removed, so a false positive of the banding costs one signature comparison while a false
# negative is a duplicate missed for good. Hence recall is weighted far above precision.
FALSE_POSITIVE_WEIGHT = 0.05
FALSE_NEGATIVE_WEIGHT = 0.95
# With exact verification a false candidate costs one set comparison, in a pass that reads only
# candidate documents, so the banding leans further towards recall: 16 bands x 7 rows instead of
# 14 x 8 at threshold 0.8 (97.7% of pairs at Jaccard 0.8 become candidates instead of 92.4%).
EXACT_FALSE_POSITIVE_WEIGHT = 0.02
EXACT_FALSE_NEGATIVE_WEIGHT = 0.98

VERIFY_MODES = ("estimate", "exact")
JACCARD = Range(0.0, 1.0, low_open=True)  # a similarity threshold: (0, 1]


@dataclass
class DedupConfig:
    """Everything that changes the result of a dedup run (workers and memory do not)."""

    threshold: float = 0.8
    ngram: int = 5
    num_perm: int = 112
    seed: int = 1
    bands: int | None = None
    rows: int | None = None
    # Jaccard a candidate pair needs to be merged (default: threshold).
    verify_threshold: float | None = None
    # How a candidate pair's Jaccard is measured: "estimate" (share of agreeing signature
    # values) or "exact" (true Jaccard of the two shingle sets; see curate.stages.dedup.exact).
    verify: str = "estimate"
    exact: bool = True
    near: bool = True
    url: bool = False
    shingle_hash: str = "fast"
    shard_bytes: int = DEFAULT_SHARD_BYTES

    # The numeric settings' ranges, checked when the config is built (from_dict: the pipeline's
    # [dedup]) and by validate() (the command line builds it in code). The seed feeds
    # numpy.random.RandomState, which takes 0 .. 2**32 - 1.
    bounds: ClassVar[dict[str, Range]] = {
        "threshold": JACCARD,
        "verify_threshold": JACCARD,
        "ngram": SIZE,
        "num_perm": Range(2, 4096),
        "seed": SEED,
        "bands": SIZE,
        "rows": SIZE,
        "shard_bytes": SIZE,
    }

    def validate(self, who: str = "dedup") -> DedupConfig:
        check_bounds(self, who)
        if self.verify not in VERIFY_MODES:
            raise ConfigError(f"verify must be 'estimate' or 'exact', got {self.verify!r}")
        if self.shingle_hash not in ("fast", "sha1"):
            raise ConfigError(f"shingle hash must be 'fast' or 'sha1', got {self.shingle_hash!r}")
        if (self.bands is None) != (self.rows is None):
            raise ConfigError("give both --bands and --rows, or neither (derived from the threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ConfigError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if not (self.exact or self.near or self.url):
            raise ConfigError("nothing to do: exact, near and url dedup are all off")
        return self

    def lsh(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.verify == "exact":
            return optimal_bands(
                self.threshold, self.num_perm, EXACT_FALSE_POSITIVE_WEIGHT, EXACT_FALSE_NEGATIVE_WEIGHT
            )
        return optimal_bands(self.threshold, self.num_perm, FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT)

    @property
    def accept(self) -> float:
        return self.threshold if self.verify_threshold is None else self.verify_threshold

    def to_json(self) -> dict[str, Any]:
        bands, rows = self.lsh() if self.near else (None, None)
        out = {**asdict(self), "bands": bands, "rows": rows, "verify_threshold": self.accept}
        if self.verify == "estimate":
            # Left out at its default so outputs written before the option existed keep their
            # configuration hash (a rerun of them stays a no-op).
            del out["verify"]
        return out
