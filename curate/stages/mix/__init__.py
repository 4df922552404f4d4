"""The mix stage: sources mixed to an exact token budget by weight, globally shuffled.

``run(MixConfig, StageContext)`` writes the mix; ``plan(MixConfig, StageContext)`` stops after
counting and planning. ``load_mix_config`` / ``parse_source_option`` read the settings; the
algorithm is described in :mod:`curate.stages.mix.run`.
"""

from curate.stages.mix.config import MixConfig, SourceSpec, load_mix_config, parse_source_option
from curate.stages.mix.report import summarize_mix
from curate.stages.mix.run import STAGE, plan, run

__all__ = ["STAGE", "MixConfig", "SourceSpec", "load_mix_config", "parse_source_option", "plan", "run", "summarize_mix"]
