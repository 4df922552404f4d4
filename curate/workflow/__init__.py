"""``curate pipeline``: every stage from raw crawl to an RLHF-tuned model, in one resumable run.

``load_pipeline(FILE)`` reads and checks a pipeline file, ``run_pipeline(pipe)`` runs it,
``format_summary`` prints the result. The stages are records in ``stages``; what a run
remembers between runs (completion markers, fingerprints, the lock) is in ``state``.
"""

from curate.workflow.config import Pipeline
from curate.workflow.run import load_pipeline, run_pipeline
from curate.workflow.stages import STAGE_NAMES, STAGES
from curate.workflow.summary import StageOutcome, format_summary

__all__ = ["STAGES", "STAGE_NAMES", "Pipeline", "StageOutcome", "format_summary", "load_pipeline", "run_pipeline"]
