"""Benchmark tasks in one shape, for evaluation (``curate eval``) and decontamination.

Every multiple-choice item becomes an :class:`Item`: a context, the choices scored as its
continuations, the index of the right one, and the texts as written (question, passage,
answers) that decontamination looks for in training data. Prompts follow the public harnesses'
conventions (lm-evaluation-harness, OLMo): ``Question: ...\\nAnswer:`` with `` choice``
continuations for ARC, CommonsenseQA and PIQA; COPA's premise joined by `` because`` /
`` therefore``; BoolQ's passage, question and `` yes``/`` no``; MMLU with lettered options;
Winogrande by partial scoring (each option substituted for the blank, the text after it scored).

Bundled tasks (``curate/core/data/tasks``, sources and licences in its NOTICE.md) are named as
in :data:`BUNDLED`; ``core`` is all of them. A user adds a task without code (see
:func:`load_task`): a JSONL file of ``{"context", "choices", "label", "id"?}`` records, or a TOML
file mapping an existing JSONL's fields.
"""

from __future__ import annotations

import gzip
import os
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.core.errors import ConfigError, InputError
from curate.core.files import iter_jsonl

DATA_DIR = Path(__file__).resolve().parent / "data" / "tasks"


@dataclass(frozen=True)
class Item:
    """One multiple-choice question. ``requests()`` gives the (context, continuation) pair the
    model scores for each choice: the same context for all, or with ``contexts`` one per choice
    (Winogrande's partial scoring: then ``choices`` holds the one shared continuation)."""

    task: str
    id: str
    context: str
    choices: tuple[str, ...]
    label: int
    texts: tuple[str, ...] = ()  # question, passage and answers as written (decontamination)
    contexts: tuple[str, ...] = ()

    def requests(self) -> list[tuple[str, str]]:
        if self.contexts:
            return [(c, self.choices[0]) for c in self.contexts]
        return [(self.context, choice) for choice in self.choices]

    @property
    def n_choices(self) -> int:
        return len(self.contexts) if self.contexts else len(self.choices)

    def answer(self) -> str:
        """The right choice's text, for few-shot examples (context plus this)."""
        context, continuation = self.requests()[self.label]
        return context + continuation


@dataclass(frozen=True)
class Task:
    """A named set of items: where they are (``files`` by split), which split is scored and
    which gives few-shot examples (None: other items of the scored split)."""

    name: str
    files: dict[str, str]
    convert: Callable[[str, int, dict[str, Any]], Item]
    eval_split: str
    fewshot_split: str | None = None
    source: str = ""
    licence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def items(self, split: str | None = None, limit: int | None = None) -> Iterator[Item]:
        """The items of ``split`` (default: the scored one), in file order, at most ``limit``."""
        split = split or self.eval_split
        if split not in self.files:
            raise ConfigError(f"task {self.name!r} has no {split!r} split (has: {', '.join(self.files)})")
        path = self.files[split]
        for n, (lineno, record, problem) in enumerate(_records(path)):
            if limit is not None and n >= limit:
                return
            if problem is not None:
                raise InputError(f"{path}:{lineno}: {problem}")
            try:
                yield self.convert(self.name, n, record)
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise InputError(f"{path}:{lineno}: not a {self.name} record ({type(exc).__name__}: {exc})") from None


def _records(path: str) -> Iterator[tuple[int, Any, str | None]]:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            yield from iter_jsonl(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None


# --------------------------------------------------------------------------- the bundled sets


def _lettered(record: dict[str, Any]) -> tuple[list[str], int]:
    """ARC/OpenBookQA/CommonsenseQA ``choices{text,label}`` and ``answerKey`` (A-E or 1-4)."""
    texts, labels = record["choices"]["text"], record["choices"]["label"]
    return list(texts), labels.index(record["answerKey"])


def _question_answer(task: str, n: int, r: dict[str, Any]) -> Item:
    """ARC and CommonsenseQA: "Question: ...\nAnswer:" and the lettered choices."""
    choices, label = _lettered(r)
    return Item(
        task,
        r["id"],
        f"Question: {r['question']}\nAnswer:",
        tuple(f" {c}" for c in choices),
        label,
        texts=(r["question"], *choices),
    )


def _openbookqa(task: str, n: int, r: dict[str, Any]) -> Item:
    choices, label = _lettered(r)
    return Item(
        task, r["id"], r["question_stem"], tuple(f" {c}" for c in choices), label, texts=(r["question_stem"], *choices)
    )


def _copa(task: str, n: int, r: dict[str, Any]) -> Item:
    connector = {"cause": " because", "effect": " therefore"}[r["question"]]
    context = r["premise"].rstrip(". ") + connector
    options = [r["choice1"], r["choice2"]]
    choices = tuple(" " + c[0].lower() + c[1:] for c in options)
    return Item(task, str(r.get("idx", n)), context, choices, int(r["label"]), texts=(r["premise"], *options))


def _piqa(task: str, n: int, r: dict[str, Any]) -> Item:
    options = [r["sol1"], r["sol2"]]
    return Item(
        task,
        str(n),
        f"Question: {r['goal']}\nAnswer:",
        tuple(f" {c}" for c in options),
        int(r["label"]),
        texts=(r["goal"], *options),
    )


def _winogrande(task: str, n: int, r: dict[str, Any]) -> Item:
    sentence = r["sentence"]
    cut = sentence.index("_")
    before, after = sentence[:cut], sentence[cut + 1 :].strip()
    options = [r["option1"], r["option2"]]
    return Item(
        task,
        str(n),
        before,
        (" " + after,),
        int(r["answer"]) - 1,
        texts=(sentence.replace("_", options[int(r["answer"]) - 1]),),
        contexts=tuple(before + o for o in options),
    )


def _boolq(task: str, n: int, r: dict[str, Any]) -> Item:
    context = f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"
    return Item(task, str(n), context, (" no", " yes"), int(bool(r["answer"])), texts=(r["passage"], r["question"]))


def _mmlu(task: str, n: int, r: dict[str, Any]) -> Item:
    subject = r["subject"].replace("_", " ")
    options = "".join(f"{letter}. {text}\n" for letter, text in zip("ABCD", r["choices"]))
    context = (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        f"{r['question'].strip()}\n{options}Answer:"
    )
    return Item(
        task,
        f"{r['subject']}-{n}",
        context,
        (" A", " B", " C", " D"),
        int(r["answer"]),
        texts=(r["question"], *r["choices"]),
    )


def _bundled(name: str, convert: Callable, eval_split: str, fewshot: str | None, source: str, licence: str) -> Task:
    splits = {"validation", "dev", "test"}
    files = {s: str(DATA_DIR / f"{name}.{s}.jsonl.gz") for s in splits if (DATA_DIR / f"{name}.{s}.jsonl.gz").exists()}
    return Task(name, files, convert, eval_split, fewshot, source, licence)


BUNDLED: dict[str, Task] = {
    t.name: t
    for t in (
        _bundled("arc_easy", _question_answer, "validation", None, "allenai/ai2_arc", "CC BY-SA 4.0"),
        _bundled("arc_challenge", _question_answer, "validation", None, "allenai/ai2_arc", "CC BY-SA 4.0"),
        _bundled("openbookqa", _openbookqa, "validation", None, "allenai/openbookqa", "Apache-2.0"),
        _bundled("copa", _copa, "validation", None, "SuperGLUE COPA", "BSD-2-Clause"),
        _bundled("commonsense_qa", _question_answer, "validation", None, "tau/commonsense_qa", "MIT"),
        _bundled("piqa", _piqa, "validation", None, "ybisk/piqa", "AFL-3.0"),
        _bundled("winogrande", _winogrande, "validation", None, "allenai/winogrande", "CC-BY"),
        _bundled("boolq", _boolq, "validation", None, "google/boolq", "CC BY-SA 3.0"),
        _bundled("mmlu", _mmlu, "test", "dev", "cais/mmlu", "MIT"),
    )
}
CORE = list(BUNDLED)  # ``--tasks core``: every bundled set


# --------------------------------------------------------------------------- user tasks


def _generic(mapping: dict[str, Any]) -> Callable[[str, int, dict[str, Any]], Item]:
    """Items from records with the fields ``mapping`` names (see :func:`load_task`)."""
    context_field = mapping.get("context", "context")
    choices_field = mapping.get("choices", "choices")
    label_field = mapping.get("label", "label")
    id_field = mapping.get("id", "id")
    template = mapping.get("template")
    label_base = int(mapping.get("label_base", 0))
    prefix = mapping.get("choice_prefix", " ")

    def convert(task: str, n: int, r: dict[str, Any]) -> Item:
        if isinstance(choices_field, list):
            options = [str(r[f]) for f in choices_field]
        else:
            options = [str(c) for c in r[choices_field]]
        context = template.format(**r) if template else str(r[context_field])
        raw_label = r[label_field]
        label = (
            options.index(str(raw_label))
            if isinstance(raw_label, str) and not raw_label.isdigit()
            else int(raw_label) - label_base
        )
        if not 0 <= label < len(options):
            raise ValueError(f"label {raw_label!r} is not one of the {len(options)} choices")
        question = str(r.get(context_field, context))
        return Item(
            task,
            str(r.get(id_field, n)),
            context,
            tuple(prefix + o for o in options),
            label,
            texts=(question, *options),
        )

    return convert


MAPPING_KEYS = {
    "name",
    "file",
    "context",
    "choices",
    "label",
    "id",
    "template",
    "label_base",
    "choice_prefix",
    "fewshot_file",
}


def load_task(spec: str) -> Task:
    """A bundled task by name, or a user task from a file:

    - ``NAME.jsonl`` (``.json.gz`` too): records ``{"context": str, "choices": [str], "label":
      int, "id": str?}``; each choice is scored after the context with a space in front.
    - ``NAME.toml``: ``file`` (a JSONL, relative to the TOML's folder) and how its fields map:
      ``context`` (a field) or ``template`` (``"Question: {q}\\nAnswer:"``), ``choices`` (a
      list field, or a list of fields), ``label`` (an index, or the right choice's text),
      ``label_base`` (1 for 1-based labels), ``id``, ``choice_prefix`` (default " "),
      ``fewshot_file`` (examples from another file), ``name``.
    """
    if spec in BUNDLED:
        return BUNDLED[spec]
    path = Path(spec)
    if path.suffix == ".toml":
        return _task_from_toml(path)
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        if not path.exists():
            raise InputError(f"{spec}: no such task file")
        name = path.name.split(".")[0]
        return Task(name, {"test": str(path)}, _generic({}), "test")
    raise ConfigError(f"unknown task {spec!r}; bundled: {', '.join(BUNDLED)} (or core), or a .jsonl / .toml task file")


def _task_from_toml(path: Path) -> Task:
    try:
        mapping = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such task file") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML task mapping ({exc})") from None
    unknown = sorted(set(mapping) - MAPPING_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(MAPPING_KEYS))}")
    if "file" not in mapping:
        raise ConfigError(f"{path}: 'file' (the task's JSONL) is required")
    base = path.parent
    files = {"test": os.path.join(base, mapping["file"])}
    if "fewshot_file" in mapping:
        files["fewshot"] = os.path.join(base, mapping["fewshot_file"])
    name = mapping.get("name") or path.stem
    return Task(name, files, _generic(mapping), "test", "fewshot" if "fewshot" in files else None)


def resolve_tasks(spec: str) -> list[Task]:
    """``core``, or comma-separated bundled names and task files."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    out: list[Task] = []
    for name in names:
        out.extend(BUNDLED[t] for t in CORE) if name == "core" else out.append(load_task(name))
    if not out:
        raise ConfigError("no tasks given (use --tasks core, or names such as arc_easy,piqa)")
    return out


def task_texts(tasks: list[Task]) -> Iterator[tuple[str, str, str]]:
    """``(task, item id, text)`` for every text of every item of every split: what
    decontamination looks for."""
    for task in tasks:
        for split in task.files:
            for item in task.items(split):
                for text in item.texts:
                    yield task.name, item.id, text


def describe(tasks: list[Task]) -> list[dict[str, Any]]:
    return [{"name": t.name, "splits": sorted(t.files), "source": t.source, "licence": t.licence} for t in tasks]


def _check_bundled() -> None:  # pragma: no cover - a packaging check for developers
    for task in BUNDLED.values():
        for split in task.files:
            n = sum(1 for _ in task.items(split))
            print(f"{task.name:16s} {split:10s} {n:6d} items")


if __name__ == "__main__":  # pragma: no cover
    _check_bundled()
