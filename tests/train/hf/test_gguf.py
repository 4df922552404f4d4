"""`curate export gguf`, read back with gguf.GGUFReader: tensor names, shapes and types as
llama.cpp's Llama loader expects them, the metadata keys, the vocabulary, and q/k rows in the
layout llama.cpp's own converter produces from a transformers folder."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from curate.core.errors import CurateError
from curate.core.tokenizer import ByteTokenizer
from train.checkpoint import load_checkpoint
from train.export import export_gguf, export_hf
from train.hf.tokenizer import CHAT_TEMPLATE

gguf = pytest.importorskip("gguf")

LAYER_TENSORS = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
]


def read(path):
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    return fields, tensors


def values(tensor) -> np.ndarray:
    """A GGUF tensor as float32 in (rows, columns) order, dequantized."""
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape(tuple(reversed([int(d) for d in tensor.shape])))


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's convert_hf_to_gguf.py does to a transformers q/k projection (halves ->
    pairs), written here independently of train/hf/layout.py."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


@pytest.mark.parametrize("tied", [True, False])
def test_names_shapes_types_and_metadata(make_checkpoint, bpe, bpe_dir, tmp_path, tied):
    ckpt = make_checkpoint(bpe, tie_embeddings=tied)
    result = export_gguf(ckpt, tmp_path / "m.gguf")
    fields, tensors = read(tmp_path / "m.gguf")
    V, C, F = bpe.vocab_size, 64, 192
    expected = {"token_embd.weight": (C, V), "output_norm.weight": (C,)}
    if not tied:
        expected["output.weight"] = (C, V)  # tied: llama.cpp reuses token_embd
    shapes = dict(attn_q=(C, 64), attn_k=(C, 32), attn_v=(C, 32), attn_output=(C, C), ffn_gate=(C, F), ffn_up=(C, F))
    shapes.update(ffn_down=(F, C), attn_norm=(C,), ffn_norm=(C,))
    for i in range(2):
        expected.update({f"blk.{i}.{name}.weight": shapes[name] for name in LAYER_TENSORS})
    assert {n: tuple(int(d) for d in t.shape) for n, t in tensors.items()} == expected
    assert result.tensors == len(expected)
    F16, F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    for name, tensor in tensors.items():
        assert tensor.tensor_type == (F32 if name.endswith("norm.weight") else F16), name
    assert fields["general.architecture"] == "llama"
    meta = {
        "llama.context_length": 64,
        "llama.embedding_length": C,
        "llama.block_count": 2,
        "llama.feed_forward_length": F,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.vocab_size": V,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": bpe.eot_id,
        "tokenizer.ggml.eos_token_id": bpe.eot_id,
        "tokenizer.ggml.eot_token_id": bpe.token_id("<|end|>"),
        "tokenizer.ggml.padding_token_id": bpe.pad_id,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": CHAT_TEMPLATE,
        "general.file_type": int(gguf.LlamaFileType.MOSTLY_F16),
    }
    assert {k: fields[k] for k in meta} == meta
    assert fields["llama.rope.freq_base"] == pytest.approx(5000.0)
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    source = json.loads((bpe_dir / "tokenizer.json").read_text())
    assert fields["tokenizer.ggml.tokens"][bpe.eot_id] == "<|endoftext|>"
    assert all(fields["tokenizer.ggml.tokens"][i] == t for t, i in source["model"]["vocab"].items())
    assert fields["tokenizer.ggml.token_type"][bpe.token_id("<|user|>")] == int(gguf.TokenType.CONTROL)
    assert fields["tokenizer.ggml.token_type"][300] == int(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in source["model"]["merges"]]
    assert fields["tokenizer.ggml.merges"] == merges and merges


def test_weights_are_in_llama_cpps_layout(make_checkpoint, bpe, tmp_path):
    """q/k rows equal what llama.cpp's converter makes of our transformers export; all other
    tensors equal ours (to f16 precision); gain-free norms are ones."""
    ckpt = make_checkpoint(bpe)
    export_gguf(ckpt, tmp_path / "m.gguf")
    export_hf(ckpt, tmp_path / "hf")
    _, tensors = read(tmp_path / "m.gguf")
    from safetensors.torch import load_file

    hf = {k: v.numpy() for k, v in load_file(tmp_path / "hf" / "model.safetensors").items()}
    for hf_name, heads, name in [("self_attn.q_proj", 4, "attn_q"), ("self_attn.k_proj", 2, "attn_k")]:
        converted = llama_cpp_permute(hf[f"model.layers.1.{hf_name}.weight"], heads)
        assert np.abs(values(tensors[f"blk.1.{name}.weight"]) - converted).max() < 1e-3
    state = load_checkpoint(ckpt).model_state
    embed = state["tok_emb.weight"].numpy()
    assert np.abs(values(tensors["token_embd.weight"]) - embed).max() < 1e-3
    assert np.abs(values(tensors["blk.0.ffn_down.weight"]) - state["blocks.0.mlp.down.weight"].numpy()).max() < 1e-3
    assert (values(tensors["output_norm.weight"]) == 1).all()


def test_q8_0_quantizes_the_matrices(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe)
    f16 = export_gguf(ckpt, tmp_path / "f16.gguf")
    q8 = export_gguf(ckpt, tmp_path / "q8.gguf", qtype="q8_0")
    fields, tensors = read(tmp_path / "q8.gguf")
    assert fields["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    Q8, F32 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.attn_q.weight"].tensor_type == Q8 and tensors["token_embd.weight"].tensor_type == Q8
    assert tensors["blk.0.attn_norm.weight"].tensor_type == F32
    assert q8.file_bytes < f16.file_bytes
    embed = load_checkpoint(ckpt).model_state["tok_emb.weight"].numpy()
    error = np.abs(values(tensors["token_embd.weight"]) - embed).max()
    assert 0 < error < 0.01  # 8-bit blocks: close, not exact


def test_what_llama_cpp_cannot_take_is_one_line(make_checkpoint, bpe, tmp_path):
    with pytest.raises(CurateError, match="byte tokenizer has no BPE merges"):
        export_gguf(make_checkpoint(ByteTokenizer(), name="bytes"), tmp_path / "b.gguf")
    with pytest.raises(CurateError, match="is a reward model"):
        export_gguf(make_checkpoint(bpe, kind="reward", name="rm"), tmp_path / "r.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*.tmp"))


def test_an_existing_file_needs_overwrite(make_checkpoint, bpe, tmp_path):
    ckpt = make_checkpoint(bpe)
    export_gguf(ckpt, tmp_path / "m.gguf")
    with pytest.raises(CurateError, match="exists; pass --overwrite"):
        export_gguf(ckpt, tmp_path / "m.gguf", qtype="q8_0")
    export_gguf(ckpt, tmp_path / "m.gguf", qtype="q8_0", overwrite=True)
    assert read(tmp_path / "m.gguf")[0]["general.file_type"] == int(gguf.LlamaFileType.MOSTLY_Q8_0)


def test_missing_gguf_package_says_how_to_install(make_checkpoint, bpe, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(CurateError, match=r"pip install -e '\.\[hf\]'"):
        export_gguf(make_checkpoint(bpe), tmp_path / "m.gguf")


def test_imported_models_export_too(hf_llama, tmp_path):
    """A transformers folder with curate's byte-level BPE -> hf:DIR -> GGUF."""
    folder, model = hf_llama(with_ours=True, vocab_size=380)
    export_gguf(f"hf:{folder}", tmp_path / "m.gguf")
    _, tensors = read(tmp_path / "m.gguf")
    q = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    assert np.abs(values(tensors["blk.0.attn_q.weight"]) - llama_cpp_permute(q, 4)).max() < 1e-3
    assert torch.equal(torch.tensor(values(tensors["output_norm.weight"])), model.model.norm.weight.detach())  # F32


def test_an_output_below_a_file_is_one_line(make_checkpoint, bpe, tmp_path):
    from train.export import export_hf

    ckpt = make_checkpoint(bpe)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CurateError, match="afile is a file, not a folder"):
        export_gguf(ckpt, tmp_path / "afile" / "m.gguf")
    with pytest.raises(CurateError, match="afile is a file, not a folder"):
        export_hf(ckpt, tmp_path / "afile" / "sub")
