"""curate: from raw web crawls to a training mix and a trained language model.

The library API lives in the submodules (``curate.stages.crawl.stage``, ``curate.stages.filter.stage``,
``curate.stages.dedup.run``, ``curate.stages.mix.run`` ...); ``curate.cli`` is a thin click layer over them.
"""

__version__ = "0.1.0"
