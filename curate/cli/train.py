"""``curate train ...``: thin wrappers over the ``train`` package.

Sub-commands are registered by name -> "module:attribute" and imported on use, so the
pretraining and the alignment commands can live in separate modules.
"""

from __future__ import annotations

import click

from curate.cli.common import LazyGroup

TRAIN_COMMANDS: dict[str, str] = {
    "pretrain": "curate.cli.train_pretrain:pretrain",
    "estimate": "curate.cli.train_pretrain:estimate",
    "sft": "curate.cli.train_align:sft",
    "sample-pairs": "curate.cli.train_rl:sample_pairs",
    "reward": "curate.cli.train_align:reward",
    "score": "curate.cli.train_rl:score",
    "rlhf": "curate.cli.train_rl:rlhf",
    "dpo": "curate.cli.train_align:dpo",
}


@click.group(cls=LazyGroup, lazy_commands=TRAIN_COMMANDS)
def train() -> None:
    """Train models on the mix: pretrain, sft, reward, rlhf, dpo; estimate costs."""
