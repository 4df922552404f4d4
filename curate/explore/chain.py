"""The manifest chain: from a stage's folder up to the stages that fed it, and the funnel.

:func:`manifest_chain` follows each stage's ``inputs`` (and the mix's ``upstream``) to the
manifests of the stages that fed it (mix -> dedup -> filter -> crawl), so drop reasons and the
:func:`funnel` (documents read, kept and dropped per stage) can be reported from the mix alone.
"""

from __future__ import annotations

import os
from typing import Any

from curate.core.errors import InputError
from curate.core.manifest import MANIFEST_NAME, load_manifest


def _stage_manifest(directory: str) -> dict[str, Any] | None:
    """The folder's manifest, None when it has none *or it cannot be read*: the chain is what
    can be learnt about the stages upstream, and a damaged manifest ends the walk there like a
    missing one, rather than failing ``inspect`` on the shards it can still summarize."""
    try:
        return load_manifest(directory)
    except (InputError, OSError):
        return None


def _manifest_dir_of(path: str, base: str | None = None) -> str | None:
    """The stage directory holding ``path`` (a directory with a manifest, or a file in one)."""
    candidates = [path]
    if base and not os.path.isabs(path):
        # Relative paths were relative to wherever that stage ran: usually the manifest's own
        # directory or one of its ancestors (the project root above work/).
        here = os.path.abspath(base)
        for _ in range(8):
            candidates.append(os.path.join(here, path))
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    for p in candidates:
        if os.path.isdir(p) and os.path.exists(os.path.join(p, MANIFEST_NAME)):
            return os.path.normpath(p)
        parent = os.path.dirname(p)
        if os.path.isfile(p) and parent and os.path.exists(os.path.join(parent, MANIFEST_NAME)):
            return os.path.normpath(parent)
    return None


def manifest_chain(directory: str, max_stages: int = 32) -> list[dict[str, Any]]:
    """Manifests of ``directory`` and every stage upstream of it, upstream first.

    Each item: ``{"dir", "stage", "manifest", "upstream": [dirs]}``. Input paths are tried as
    given and relative to the manifest's own directory; inputs without a manifest (WARC files,
    JSONL sources) end the walk.
    """
    seen: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def visit(d: str) -> None:
        d = os.path.normpath(d)
        if d in seen or len(seen) >= max_stages:
            return
        manifest = _stage_manifest(d)
        if manifest is None:
            return
        node = {"dir": d, "stage": manifest.get("stage", "?"), "manifest": manifest, "upstream": []}
        seen[d] = node
        parents: list[str] = []
        for item in manifest.get("inputs", []) or []:
            path = item.get("path") if isinstance(item, dict) else item if isinstance(item, str) else None
            if not path:
                continue
            up = _manifest_dir_of(path, base=d)
            if up and os.path.normpath(up) != d and up not in parents:
                parents.append(up)
        for path in manifest.get("upstream", []) or []:
            up = _manifest_dir_of(path, base=d)
            if up and os.path.normpath(up) != d and up not in parents:
                parents.append(up)
        node["upstream"] = parents
        for up in parents:
            visit(up)
        order.append(d)  # post-order: every upstream stage comes before its consumers

    visit(directory)
    return [seen[d] for d in order]


def funnel(chain: list[dict[str, Any]], tokens_per_char: float | None = None) -> list[dict[str, Any]]:
    """Per stage: documents read and kept, drops by reason, characters and tokens kept
    (tokens exact where the stage counted them, else estimated from characters)."""
    out = []
    for node in chain:
        m = node["manifest"]
        counts = m.get("counts", {})
        chars = counts.get("chars", {}) or {}
        kept_chars = chars.get("kept")
        tokens = None
        estimated = False
        if isinstance(m.get("tokens"), dict) and m["tokens"].get("realized") is not None:
            tokens = m["tokens"]["realized"]
        elif kept_chars is not None and tokens_per_char:
            tokens = int(round(kept_chars * tokens_per_char))
            estimated = True
        out.append(
            {
                "stage": node["stage"],
                "dir": node["dir"],
                "read": counts.get("read", 0),
                "kept": counts.get("kept", 0),
                "rows": m.get("tokens", {}).get("rows") if isinstance(m.get("tokens"), dict) else None,
                "rejected": dict(counts.get("rejected", {}) or {}),
                "errors": dict(counts.get("errors", {}) or {}),
                "chars_kept": kept_chars,
                "tokens_kept": tokens,
                "tokens_estimated": estimated,
            }
        )
    return out
