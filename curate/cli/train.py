"""``curate train ...`` and ``curate generate``: thin wrappers over the ``train`` package.

Sub-commands are registered by name -> "module:attribute" below and imported on use, so the
pretraining and the alignment commands can live in separate modules.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

TRAIN_COMMANDS: dict[str, str] = {
    "pretrain": "curate.cli.train_pretrain:pretrain",
    "estimate": "curate.cli.train_pretrain:estimate",
    "sft": "curate.cli.train_align:sft",
    "sample-pairs": "curate.cli.train_align:sample_pairs",
    "reward": "curate.cli.train_align:reward",
    "score": "curate.cli.train_align:score",
    "rlhf": "curate.cli.train_align:rlhf",
    "dpo": "curate.cli.train_align:dpo",
}


class _TrainGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, t in TRAIN_COMMANDS.items() if importlib.util.find_spec(t.split(":")[0])]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = TRAIN_COMMANDS.get(name)
        if target is None or importlib.util.find_spec(target.split(":")[0]) is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_TrainGroup)
def train() -> None:
    """Train models on the mix: pretrain, sft, reward, rlhf, dpo; estimate costs."""


def _generate_command() -> click.Command:
    module = "curate.cli.train_pretrain"
    if importlib.util.find_spec(module) is None:
        return None  # type: ignore[return-value]
    return importlib.import_module(module).generate


def __getattr__(name: str):
    # `generate` is defined with the pretraining commands; resolved lazily.
    if name == "generate":
        return _generate_command()
    raise AttributeError(name)
