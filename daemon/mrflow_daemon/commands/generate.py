"""Generate one image with MrFlow staged sampling (or the native baseline).

Stage 1 samples the composition at 1/scale of the target size with the
model's own schedule; the image is decoded, enlarged in one shot by a
Real-ESRGAN model, re-encoded, noised to --refine-sigma and finished with
--refine-steps Euler steps at full size. Shows a progress bar per stage and a
timing table at the end. Without --model it uses the built-in shapes model
(coloured circles, squares and triangles at 256 x 256; see docs/builtin-model.md).

Examples:
  mrflow generate --prompt "a lighthouse at dusk" --out lighthouse.png
  mrflow generate --model ~/models/FLUX.1-dev --prompt "..." --width 1024 --height 1024
  mrflow generate --model M --prompt "..." --image in.png --mask mask.png --strength 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mrflow_daemon.engine.presets import DEFAULT_PRESET, PRESETS

if TYPE_CHECKING:
    from mrflow_daemon.engine.events import Event
    from mrflow_daemon.engine.plan import Plan
    from mrflow_daemon.engine.request import LoraSpec
    from mrflow_daemon.engine.result import GenerationResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="a model from `mrflow models list`, a diffusers folder (FLUX.1 dev/schnell or "
        "Qwen-Image) or a Hugging Face id; "
        "default: the built-in shapes model",
    )
    model.add_argument(
        "--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)"
    )
    model.add_argument(
        "--dtype",
        default=None,
        choices=["bf16", "fp16", "fp32", "bfloat16", "float16", "float32"],
        help="weights and compute precision (default: bf16 on CUDA, bf16/fp16 on MPS, fp32 on CPU)",
    )
    model.add_argument(
        "--offload",
        action="store_true",
        help="keep models in RAM and move each to the GPU only while it runs (small GPUs; slower)",
    )
    model.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:WEIGHT]",
        help="attach a LoRA file for this generation, with an optional weight (default 1.0); repeatable",
    )
    model.add_argument(
        "--upscaler",
        default=None,
        help="super-resolution weights (.pth/.safetensors) or a known name such as "
        "realesr-animevideov3; default: the model's own when its folder ships one, else "
        "RealESRGAN_x2plus if installed, else RealESRGAN_x4plus; on a CPU realesr-animevideov3",
    )

    what = parser.add_argument_group("what to generate")
    what.add_argument("--prompt", required=True, help="what the image shows")
    what.add_argument(
        "--negative-prompt", default="", help="what to avoid (used by true-CFG models: Qwen-Image)"
    )
    what.add_argument(
        "--width",
        type=int,
        default=None,
        help="output width in pixels (default: the input image's, else the model's working size: "
        "256 for the built-in model, 1024 for others)",
    )
    what.add_argument(
        "--height",
        type=int,
        default=None,
        help="output height in pixels (default: as for --width)",
    )
    what.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed; the same seed gives the same image (default: random, printed)",
    )
    what.add_argument(
        "--image",
        type=Path,
        default=None,
        help="input image: img2img, or inpaint together with --mask",
    )
    what.add_argument(
        "--mask",
        type=Path,
        default=None,
        help="inpaint mask, same size as --image: white = regenerate, black = keep unchanged",
    )
    what.add_argument(
        "--strength",
        type=float,
        default=None,
        help="how much of --image to redo, in (0, 1] (default 0.6; 1.0 for inpaint)",
    )

    sampling = parser.add_argument_group("sampling (override the preset)")
    sampling.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help=f"named settings, see `mrflow presets` (default: {DEFAULT_PRESET})",
    )
    sampling.add_argument(
        "--steps", type=int, default=None, help="stage-1 (low-res) steps N1; for native, all steps"
    )
    sampling.add_argument(
        "--refine-steps", type=int, default=None, help="full-size refine Euler steps N2"
    )
    sampling.add_argument(
        "--refine-sigma",
        type=float,
        default=None,
        help="noise level the upscaled image is re-noised to (default: the preset's, 0.12-0.25, or the model card's; the built-in model's is 0.4)",
    )
    sampling.add_argument(
        "--scale",
        type=int,
        default=None,
        choices=[2, 4],
        help="stage 1 runs at 1/scale of the target size",
    )
    sampling.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="guidance scale (FLUX dev: embedded, 3.5; Qwen-Image: true CFG, 4.0; a built-in-world "
        "model whose card asks for true CFG: its scale)",
    )
    sampling.add_argument(
        "--max-side", type=int, default=2048, help="largest allowed width or height (default 2048)"
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out",
        type=Path,
        default=Path("mrflow.png"),
        help="where to write the image (default: mrflow.png)",
    )
    output.add_argument(
        "--save-stages",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every step preview, lowres.png and upscaled.png into DIR",
    )
    output.add_argument(
        "--plan", action="store_true", help="print the plan (sizes, sigmas, seeds) before running"
    )
    output.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_lora(text: str) -> LoraSpec:
    """PATH or PATH:WEIGHT (a Windows drive colon is not taken for a weight)."""
    from mrflow_daemon.engine.request import LoraSpec

    path, sep, weight = text.rpartition(":")
    if sep and path and not path.endswith(("\\", "/")):
        try:
            return LoraSpec(Path(path).expanduser(), float(weight))
        except ValueError:
            pass
    return LoraSpec(Path(text).expanduser(), 1.0)


class StageProgress:
    """A tqdm bar per stage, and the step previews into --save-stages."""

    def __init__(self, plan: Plan, save_dir: Path | None, quiet: bool) -> None:
        self.plan = plan
        self.save_dir = save_dir
        self.quiet = quiet
        self.bar: Any = None
        self.counts_steps = False

    def __call__(self, event: Event) -> None:
        from tqdm import tqdm

        from mrflow_daemon.engine.events import (
            Stage,
            StageFinished,
            StageImage,
            StageStarted,
            StepPreview,
            StepProgress,
        )

        if isinstance(event, StageStarted) and not self.quiet:
            totals = {
                Stage.STRUCTURE: self.plan.structure_steps,
                Stage.REFINE: self.plan.refine_steps,
            }
            total = totals.get(event.stage, 1)
            self.counts_steps = event.stage in totals
            unit = "step" if self.counts_steps else "stage"
            self.bar = tqdm(
                total=total, desc=f"{event.stage.value:<13}", unit=unit, leave=True, file=sys.stderr
            )
        elif isinstance(event, (StepPreview, StepProgress)):
            if self.bar is not None:
                self.bar.update(1)
            if isinstance(event, StepPreview) and self.save_dir is not None:
                event.image.save(self.save_dir / f"preview_{event.step:03d}.png")
        elif isinstance(event, StageFinished) and self.bar is not None:
            if not self.counts_steps:
                self.bar.update(1)
            self.bar.close()
            self.bar = None
        elif isinstance(event, StageImage) and self.save_dir is not None:
            event.image.save(self.save_dir / f"{event.kind}.png")


def timing_table(result: GenerationResult) -> str:
    total = result.timings.get("total", 0.0) or 1e-9
    lines = [f"{'stage':<14}{'seconds':>9}{'share':>8}", "-" * 31]
    for stage, seconds in result.timings.items():
        if stage != "total":
            lines.append(f"{stage:<14}{seconds:>9.3f}{100 * seconds / total:>7.1f}%")
    lines += ["-" * 31, f"{'total':<14}{total:>9.3f}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from mrflow_daemon.engine.errors import EngineError
    from mrflow_daemon.engine.events import CancelToken, GenerationCancelled
    from mrflow_daemon.engine.request import GenerationRequest, input_rgb

    problem = _out_problem(args.out)
    if problem:  # found now, not after the whole generation
        print(f"error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        image = input_rgb(Image.open(args.image)) if args.image else None
        mask = Image.open(args.mask).convert("L") if args.mask else None
    except OSError as exc:
        print(f"error: cannot read an input image: {exc}", file=sys.stderr)
        return 2
    if mask is not None and image is None:
        print("error: --mask needs --image", file=sys.stderr)
        return 2
    try:
        model = _model_location(args.model)
    except EngineError as exc:
        print(f"error (model): {exc.message}", file=sys.stderr)
        return 2
    default_size = image.size if image is not None else _working_size(model)
    if max(default_size) > args.max_side and args.width is None and args.height is None:
        # A large input picture is generated at --max-side on its longest side, same shape.
        ratio = args.max_side / max(default_size)
        default_size = (round(default_size[0] * ratio), round(default_size[1] * ratio))
        print(
            f"the input is larger than --max-side {args.max_side}: generating at "
            f"{default_size[0]}x{default_size[1]} (--width/--height choose)",
            file=sys.stderr,
        )
    strength = args.strength if args.strength is not None else (1.0 if mask is not None else 0.6)
    request = GenerationRequest(
        prompt=args.prompt,
        width=args.width if args.width is not None else default_size[0],
        height=args.height if args.height is not None else default_size[1],
        negative_prompt=args.negative_prompt,
        preset=args.preset,
        steps=args.steps,
        refine_steps=args.refine_steps,
        refine_sigma=args.refine_sigma,
        scale=args.scale,
        guidance=args.guidance,
        seed=args.seed,
        image=image,
        mask=mask,
        strength=strength,
        loras=[parse_lora(text) for text in args.lora],
    )
    cancel = CancelToken()
    try:
        from mrflow_daemon.engine.pipeline import MrFlowEngine

        engine = MrFlowEngine.from_pretrained(
            model,
            device=args.device,
            dtype=args.dtype,
            offload=args.offload,
            upscaler=args.upscaler,
            max_side=args.max_side,
        )
        plan = engine.plan(request)
        print(
            f"{engine.model_name} ({engine.family}) on {engine.device}, {str(engine.dtype).removeprefix('torch.')}"
        )
        if args.plan:
            print(plan.describe())
        else:
            for note in plan.notes:  # what does not apply, or comes from the model card
                print(f"note: {note}", file=sys.stderr)
        if args.save_stages is not None:
            args.save_stages.mkdir(parents=True, exist_ok=True)
        # Plan once, so the random seed (if any) is the one printed and used.
        request.seed = plan.seed
        result = engine.generate(request, StageProgress(plan, args.save_stages, args.quiet), cancel)
    except EngineError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"error{where}: {exc.message}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, GenerationCancelled):
        cancel.cancel()
        print("cancelled", file=sys.stderr)
        return 130
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result.image.save(args.out)
    except (OSError, ValueError) as exc:  # never lose a finished picture
        rescue = Path(f"mrflow-{result.seed}.png").resolve()
        result.image.save(rescue)
        print(f"error: could not write {args.out} ({exc}); wrote {rescue}", file=sys.stderr)
        return 1
    if args.save_stages is not None:
        result.image.save(args.save_stages / "final.png")
    print(timing_table(result))
    print(f"seed {result.seed}; wrote {args.out}")
    return 0


def _out_problem(out: Path) -> str | None:
    """Why the image could not be written to `out`, or None."""
    from PIL import Image

    if out.is_dir():
        return "is a folder; give a file name, for example mrflow.png inside it"
    if out.suffix.lower() not in Image.registered_extensions():
        return "the name must end in an image format's extension, for example .png, .jpg, .webp"
    return None


def _working_size(model: str | Path) -> tuple[int, int]:
    """The size a model was trained for: its built-in-world card's, else FLUX's 1024 x 1024."""
    from mrflow_daemon.builtin import model_card, working_size

    card = model_card(model) if isinstance(model, Path) else None
    return working_size(card) or (1024, 1024)


def _model_location(model: str | None) -> str | Path:
    """None: the built-in model; a catalog or installed name: its folder (`mrflow models`);
    a folder: itself; anything else that looks like "owner/name": a Hugging Face id."""
    from mrflow_daemon import models
    from mrflow_daemon.engine.errors import ModelNotFoundError
    from mrflow_daemon.engine.pipeline import HF_ID

    try:
        return models.resolve(model or "builtin")
    except ModelNotFoundError:
        if model is not None and HF_ID.match(model) and not Path(model).expanduser().exists():
            return model
        raise
