"""The crawl stage: WARC/ARC/WET archives (local, http, s3, Common Crawl) -> document shards.

``run(CrawlConfig, StageContext)`` is the stage; ``load_config`` reads ``crawl.toml``.
Modules: ``config`` (settings), ``sources`` (where inputs come from), ``warc_bytes`` and
``warc`` (record framing and recovery), ``records`` (record -> document), ``decode`` (bytes ->
text), ``extract``, ``xpaths`` and ``xpath_rules`` (main-text extraction), ``run`` (the stage).
"""

from curate.stages.crawl.config import CrawlConfig, load_config
from curate.stages.crawl.run import STAGE, run

__all__ = ["STAGE", "CrawlConfig", "load_config", "run"]
