"""The filter stage: a chain of document filters (language, quality, safety ...) over shards.

``run(FilterConfig, StageContext)`` is the stage; ``load_config`` reads a chain file. The
filters themselves live in the top-level ``filters`` package. Modules: ``chain`` (default chain,
chain files, per-process chains), ``calibrate`` (``keep_top`` cuts), ``run`` (the stage).
"""

from curate.stages.filter.run import STAGE, FilterConfig, load_config, run, summarize_filters

__all__ = ["STAGE", "FilterConfig", "load_config", "run", "summarize_filters"]
