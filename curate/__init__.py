"""curate: from raw web crawls to a training mix and a trained language model.

The library is layered (see the README's Layout section): ``curate.core`` (the document
schema, shards, manifests, configs), ``curate.runtime`` (the stage shape, output folders and
the executor), ``curate.stages`` (crawl, filter, dedup, mix, tokenize), ``curate.explore``
(inspect, sql, report), ``curate.workflow`` (``curate pipeline``); ``curate.cli`` is a thin
click layer over them. ``filters`` and ``train`` sit beside the stages.
"""

from curate.core.version import __version__

__all__ = ["__version__"]
