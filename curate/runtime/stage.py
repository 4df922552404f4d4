"""The one shape of a data stage.

A stage is a package under :mod:`curate.stages` with a configuration dataclass and::

    run(config, ctx: StageContext) -> dict        # the manifest, also in ctx.output/manifest.json

:class:`StageContext` carries what every stage gets besides its own settings: the inputs, the
output folder, the :class:`~curate.runtime.executor.Executor` its parallel work runs on,
whether to start over, whether to show progress, a ``log`` for notes and a memory budget
(stages that hold indexes in memory, such as dedup, have their own default). The
output folder itself goes through :class:`~curate.runtime.output.OutputDir` (checks, resume,
atomic commit); stages whose work splits by input file use
:func:`~curate.runtime.per_input.run_per_input`. The CLI commands and ``curate pipeline`` build
the config and the context, call ``run`` and print :func:`summarize` of the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from curate.runtime.executor import Executor


def _silent(message: str) -> None:
    pass


@dataclass
class StageContext:
    """What a stage run gets besides its configuration."""

    inputs: list[str]
    output: str
    executor: Executor = field(default_factory=Executor)
    overwrite: bool = False  # clear what earlier runs wrote in ``output`` and start over
    progress: bool = True  # a progress line on a terminal (CURATE_PROGRESS=0 silences it)
    log: Callable[[str], None] = _silent  # notes and warnings for the user
    memory_bytes: int | None = None  # working memory the stage may use (None: the stage's own default)


def summarize(manifest: dict[str, Any]) -> str:
    """A few human lines about a stage's manifest (printed by the CLI at the end of a run)."""
    c = manifest["counts"]
    lines = [
        f"{manifest['stage']}: read {c['read']:,}  kept {c['kept']:,}  "
        f"rejected {sum(c['rejected'].values()):,}  errors {sum(c['errors'].values()):,}"
    ]
    for title, key in (("rejected", "rejected"), ("errors", "errors"), ("repaired", "repaired")):
        items = sorted(c.get(key, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        if items:
            lines.append(f"  {title}: " + ", ".join(f"{k}={v:,}" for k, v in items[:12]))
    failed = [i for i in manifest.get("inputs", []) if i.get("status") == "failed"]
    for item in failed[:10]:
        lines.append(f"  unreadable input: {item['path']}: {item.get('message', '')}")
    return "\n".join(lines)
