"""Models in and out of the Hugging Face ecosystem: conversions between curate checkpoints and
``transformers`` Llama folders (both ways) and llama.cpp GGUF files (out).

* :mod:`train.hf.layout`: the mapping itself: config keys, tensor names, the RoPE layout;
* :mod:`train.hf.tokenizer`: tokenizer files both ways, with the chat template;
* :mod:`train.hf.weights`: safetensors folders (sharded, with the index) read and written;
* :mod:`train.hf.writer`: a checkpoint as a ``transformers`` folder, with its model card;
* :mod:`train.hf.gguf_file`: a checkpoint as one GGUF file;
* :mod:`train.hf.importer`: a ``transformers`` folder as a checkpoint's parts.

None of these read checkpoints themselves (train/checkpoint.py resolves ``hf:DIR`` through
the importer, and train/export.py reads a checkpoint for the writers), so the package sits
below train/checkpoint.py. ``transformers`` itself is never imported: the folder is plain
JSON and safetensors; only the GGUF writer needs an optional package (``gguf``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from curate.core.errors import ConfigError

INSTALL_HINT = "pip install -e '.[hf]'"


def optional(module: str, what: str) -> ModuleType:
    """Import an optional dependency of the ``hf`` extra, or say in one line how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the `{module}` package: {INSTALL_HINT}") from None
