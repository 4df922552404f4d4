"""The dedup stage: URL, exact and MinHash near-duplicate removal across a whole corpus.

``run(DedupConfig, StageContext)`` is the stage (``ctx.memory_bytes`` its memory budget,
``ctx.executor`` local processes or Ray tasks, with the same result) and ``plan(DedupConfig,
StageContext)`` its resource plan; ``DEFAULT_MEMORY_GB`` is the budget unless told otherwise.

Modules: ``config`` (settings and their defaults), ``inputs`` (input metadata, schema checks,
casts), ``plan`` (resource plan), ``minhash`` (normalization, shingles, signatures), ``lsh``
(banding), ``urls`` (URL keys), ``signatures`` (pass 1 in the workers), ``signature_pass`` (pass 1
on the driver), ``index`` (spilling key index, document store, union-find), ``state`` (a run's
state between the passes), ``engine`` (what differs between engines; the local one), ``ray`` and
``ray_tasks`` (the Ray engine and its tasks), ``partitioned`` (the partitioned files the tasks
share), ``decide`` (ranking and the decisions), ``exact`` and
``exact_store`` (exact verification), ``output`` (pass 2), ``run`` (the stage).
"""

from curate.stages.dedup.config import DEFAULT_MEMORY_GB, DedupConfig
from curate.stages.dedup.plan import DedupPlan
from curate.stages.dedup.run import STAGE, plan, run, summarize

__all__ = ["DEFAULT_MEMORY_GB", "STAGE", "DedupConfig", "DedupPlan", "plan", "run", "summarize"]
