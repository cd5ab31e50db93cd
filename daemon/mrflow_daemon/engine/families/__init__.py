"""Model families: recognise a diffusers folder and wrap its pipeline in an adapter.

`family_info(folder)` reads only JSON configs (no weights), so a plan can be
made for a model that is not loaded. `make_adapter(pipe, info)` wraps a
loaded pipeline. Adapters are imported lazily: they need torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrflow_daemon.engine.errors import ModelNotFoundError, UnsupportedModelError
from mrflow_daemon.engine.plan import FamilyInfo

if TYPE_CHECKING:
    from mrflow_daemon.engine.families.base import FamilyAdapter

FLUX_PIPELINES = {"FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"}
QWEN_PIPELINES = {"QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"}
SUPPORTED = sorted(FLUX_PIPELINES | QWEN_PIPELINES)


def flux_dev_info(scheduler_config: dict[str, Any]) -> FamilyInfo:
    """FLUX.1-dev: 50 steps, embedded guidance 3.5 (its pipeline's defaults)."""
    return FamilyInfo("flux-dev", scheduler_config, 50, 3.5, uses_guidance=True, true_cfg=False)


def flux_schnell_info(scheduler_config: dict[str, Any]) -> FamilyInfo:
    """FLUX.1-schnell: timestep-distilled, 4 steps, no guidance input."""
    return FamilyInfo(
        "flux-schnell",
        scheduler_config,
        4,
        0.0,
        uses_guidance=False,
        true_cfg=False,
        distilled=True,
    )


def qwen_image_info(scheduler_config: dict[str, Any]) -> FamilyInfo:
    """Qwen-Image: 50 steps, true CFG scale 4.0 with a negative prompt."""
    return FamilyInfo("qwen-image", scheduler_config, 50, 4.0, uses_guidance=True, true_cfg=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"{path} is missing: not a complete diffusers model folder", field="model"
        ) from None
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(f"{path} is not valid JSON: {exc}", field="model") from None


def family_from_configs(
    class_name: str,
    transformer_config: dict[str, Any],
    scheduler_config: dict[str, Any],
    where: str = "this model",
) -> FamilyInfo:
    """The family of a pipeline class, told apart by its transformer and scheduler configs."""
    scheduler_config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    if class_name in FLUX_PIPELINES:
        if transformer_config.get("guidance_embeds", False):
            return flux_dev_info(scheduler_config)
        return flux_schnell_info(scheduler_config)
    if class_name in QWEN_PIPELINES:
        return qwen_image_info(scheduler_config)
    raise UnsupportedModelError(
        f"{where} holds a {class_name or 'unknown'} pipeline; supported: {', '.join(SUPPORTED)}",
        field="model",
    )


def family_info(folder: str | Path) -> FamilyInfo:
    """Detect the family of a diffusers folder from model_index.json and the configs."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelNotFoundError(f"model folder {root} does not exist", field="model")
    index = _read_json(root / "model_index.json")
    class_name = str(index.get("_class_name", ""))
    if class_name not in FLUX_PIPELINES | QWEN_PIPELINES:
        return family_from_configs(class_name, {}, {}, where=str(root))
    info = family_from_configs(
        class_name,
        _read_json(root / "transformer" / "config.json"),
        _read_json(root / "scheduler" / "scheduler_config.json"),
        where=str(root),
    )
    return with_card(info, root)


def with_card(info: FamilyInfo, root: Path) -> FamilyInfo:
    """A built-in-world FLUX model's card may ask for true CFG (two calls a step, with the
    card's scale as the default guidance; its embedded guidance input is then held fixed) and
    for its own refine sigma in every staged preset."""
    from mrflow_daemon.builtin import model_card, refine_sigma, true_cfg_scale

    card = model_card(root)
    if card is None or info.name != "flux-dev":
        return info
    scale = true_cfg_scale(card)
    if scale is not None:
        info = dataclasses.replace(info, default_guidance=scale, true_cfg=True)
    return dataclasses.replace(info, refine_sigma=refine_sigma(card))


def family_of_pipeline(pipe: Any) -> FamilyInfo:
    """The family of an already-built pipeline object (for example one made in memory)."""
    return family_from_configs(
        type(pipe).__name__,
        dict(pipe.transformer.config),
        dict(pipe.scheduler.config),
        where=f"the given {type(pipe).__name__}",
    )


def pipeline_class(info: FamilyInfo) -> Any:
    """The diffusers text-to-image pipeline class that loads this family's folder."""
    if info.name.startswith("flux"):
        from diffusers import FluxPipeline

        return FluxPipeline
    from diffusers import QwenImagePipeline

    return QwenImagePipeline


def make_adapter(pipe: Any, info: FamilyInfo) -> FamilyAdapter:
    if info.name.startswith("flux"):
        from mrflow_daemon.engine.families.flux import FluxAdapter

        return FluxAdapter(pipe, info)
    from mrflow_daemon.engine.families.qwen_image import QwenImageAdapter

    return QwenImageAdapter(pipe, info)
