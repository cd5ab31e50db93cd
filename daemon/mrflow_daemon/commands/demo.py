"""Start a daemon, generate one image with MrFlow on the built-in model, show every stage.

    mrflow demo --out out/demo

Starts a private daemon on a free loopback port (in this process), connects
to it with the reference client exactly as the Krita plugin does (websocket,
token, msgpack), generates one image and writes what the artist would see:
every low-res preview (preview_01.jpg ...), the decoded low-res image
(lowres.png), the Real-ESRGAN enlargement (upscaled.png) and the refined
result (result.png). Then it prints a timing table and stops the daemon.

The built-in model is the project's own small FLUX-architecture model of
coloured shapes (docs/builtin-model.md): without --prompt/--width/--height the
demo paints its example caption at its working size, 256 x 256, with the x2
upscaler trained beside it, and checks the picture against the caption. In a
checkout without its trained weights it is a tiny random pipeline instead
(pictures are noise, every stage still runs). Use --model for a real model.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mrflow_daemon import paths

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 130

FALLBACK_PROMPT = "a lighthouse on a cliff at dusk, oil painting"
FALLBACK_SIZE = (512, 512)
CPU_UPSCALER = "realesr-animevideov3-x2"
"""Real-ESRGAN's compact (SRVGG) network: seconds instead of minutes on a laptop CPU."""

STAGE_NAMES = {
    "load": "load model",
    "text_encode": "encode prompt",
    "structure": "low-res steps",
    "decode_lowres": "decode low-res",
    "upscale": "GAN upscale",
    "encode": "re-encode + noise",
    "refine": "refine step",
    "decode": "decode",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/demo"),
        help="folder for the images (default out/demo)",
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="what to paint (default: the built-in model's example caption, else "
        f"{FALLBACK_PROMPT!r})",
    )
    parser.add_argument(
        "--model", default="builtin", help="model name or diffusers folder (default: builtin)"
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="output width (default: the model's working size, else 512)",
    )
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help="output height (default: the model's working size, else 512)",
    )
    parser.add_argument("--preset", default=None, help="sampling preset (default: paper, 12+1)")
    parser.add_argument("--steps", type=int, default=None, help="override the low-res step count")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--device", default="", help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--upscaler",
        default=None,
        help="upscaler weights or name (default: the model's own when its folder ships one, as "
        "the built-in model's does; else the daemon's Real-ESRGAN, x2plus or x4plus, on a GPU, "
        f"and on a CPU the compact {CPU_UPSCALER}, about 30x lighter)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The library's own download/load bars would tear through our progress line.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from mrflow_daemon.client import ClientError, JobCancelled, JobFailed, connect
    from mrflow_daemon.server.app import DaemonThread
    from mrflow_daemon.server.config import ConfigError, load_config

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"mrflow demo: cannot use --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    from mrflow_daemon.builtin import model_card, trained_upscaler

    folder = _model_folder(args.model)
    card = model_card(folder) if folder is not None else None
    _fill_defaults(args, card)
    upscaler = args.upscaler
    if upscaler is None:
        # "": the daemon's default, which is the model's own upscaler when its folder has one.
        bundled = folder is not None and trained_upscaler(folder) is not None
        upscaler = "" if bundled or _has_gpu(args.device) else CPU_UPSCALER
    try:
        config = load_config(
            # A private daemon: the user's daemon.toml and MRFLOW_* settings are for `mrflow serve`.
            read_file=False,
            environ={},
            overrides={
                "port": 0,
                "model": args.model,
                "device": args.device,
                "upscaler": upscaler,
                "log_level": "warning",
                "log_file": str(paths.log_dir() / "demo.log"),
            },
        )
    except ConfigError as exc:
        print(f"mrflow demo: {exc}", file=sys.stderr)
        return EXIT_FAILED

    print("Starting a private MrFlow daemon on a free loopback port ...", flush=True)
    started = time.monotonic()
    with DaemonThread(config) as daemon:
        startup_s = time.monotonic() - started
        print(f"  listening on {daemon.url} (device {daemon.device}) after {startup_s:.1f} s")
        print(f"  upscaler: {upscaler or 'Real-ESRGAN (the daemon default)'}")
        try:
            with connect(daemon.url, token=daemon.token, client_name="mrflow demo") as client:
                return _generate(client, args, out, startup_s, check=card is not None)
        except (JobCancelled, KeyboardInterrupt):
            print("\ncancelled", file=sys.stderr)
            return EXIT_CANCELLED
        except (JobFailed, ClientError) as exc:
            print(f"\nmrflow demo: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            print("Stopping the daemon ...", flush=True)


def _model_folder(model: str) -> Path | None:
    """The model's folder, or None where it does not resolve (the daemon then says why)."""
    from mrflow_daemon.server.models import resolve_model

    try:
        return resolve_model(model)
    except Exception:  # an unknown model: the daemon reports it with its own message
        return None


def _fill_defaults(args: argparse.Namespace, card: dict[str, Any] | None) -> None:
    from mrflow_daemon.builtin import working_size

    width, height = working_size(card) or FALLBACK_SIZE
    if args.prompt is None:
        example = card.get("example_prompt") if card else None
        args.prompt = example if isinstance(example, str) else FALLBACK_PROMPT
    args.width = width if args.width is None else args.width
    args.height = height if args.height is None else args.height


def _check_caption(image_bytes: bytes, prompt: str) -> str:
    """The built-in model's checker on the result: a line saying what passed."""
    import io

    from PIL import Image

    from mrflow_daemon.builtin.checker import check_image
    from mrflow_daemon.builtin.world import CaptionError, parse_caption

    try:
        scene = parse_caption(prompt)
    except CaptionError as exc:
        return f"not checked: the prompt is outside the built-in grammar ({exc})"
    result = check_image(Image.open(io.BytesIO(image_bytes)).convert("RGB"), scene)
    if result.passed:
        return "all checks pass (background, count, colour, kind, position)"
    checks = result.checks()
    passed = [name for name, ok in checks.items() if ok]
    failed = [name for name, ok in checks.items() if not ok]
    return (
        f"{', '.join(passed) or 'no check'} pass; {', '.join(failed)} fail"
        " (docs/quality.md has the model's pass rates)"
    )


def _has_gpu(device: str) -> bool:
    if device:
        return not device.startswith("cpu")
    import torch

    return bool(torch.cuda.is_available() or torch.backends.mps.is_available())


def _generate(
    client: object, args: argparse.Namespace, out: Path, startup_s: float, *, check: bool
) -> int:
    from mrflow_protocol import Preview, Progress, Result, StageImage

    from mrflow_daemon.client import Client

    assert isinstance(client, Client)
    print(
        f"Generating {args.width}x{args.height} with model {args.model!r}: {args.prompt!r}",
        flush=True,
    )
    submitted = time.monotonic()
    job = client.generate(
        args.prompt,
        width=args.width,
        height=args.height,
        preset=args.preset,
        steps=args.steps,
        seed=args.seed,
        model=None if args.model == "builtin" else args.model,
    )
    first_preview_s: float | None = None
    stage_started: dict[str, float] = {}
    written: list[str] = []
    try:
        for event in job.events(timeout=600):
            if isinstance(event, Progress):
                stage_started.setdefault(event.stage, time.monotonic())
                _show_progress(event)
            elif isinstance(event, Preview):
                if first_preview_s is None:
                    first_preview_s = time.monotonic() - submitted
                name = (
                    f"preview_{event.step:02d}.{'jpg' if event.format == 'jpeg' else event.format}"
                )
                (out / name).write_bytes(event.image)
                written.append(name)
            elif isinstance(event, StageImage):
                name = f"{event.kind}.png"
                (out / name).write_bytes(event.image)
                written.append(name)
            elif isinstance(event, Result):
                (out / "result.png").write_bytes(event.image)
                written.append("result.png")
    except KeyboardInterrupt:
        job.cancel()
        raise
    result = job.outcome()  # raises JobFailed / JobCancelled with the daemon's message
    wall_s = time.monotonic() - submitted
    print()
    _print_files(out, written)
    load_s = None
    if "load" in stage_started and "text_encode" in stage_started:
        load_s = stage_started["text_encode"] - stage_started["load"]
    _print_timings(result, startup_s, load_s, first_preview_s, wall_s)
    if check:
        print(f"Checked against the caption: {_check_caption(result.image, args.prompt)}")
    return EXIT_OK


def _show_progress(event: object) -> None:
    from mrflow_protocol import Progress

    assert isinstance(event, Progress)
    percent = event.percent or 0.0
    filled = int(percent / 100 * 30)
    steps = f" {event.step}/{event.total}" if event.total else ""
    label = STAGE_NAMES.get(event.stage, event.stage)
    line = f"\r  [{'#' * filled}{'.' * (30 - filled)}] {percent:5.1f}%  {label}{steps}"
    print(f"{line:<78}", end="", flush=True)


def _print_files(out: Path, written: list[str]) -> None:
    previews = [name for name in written if name.startswith("preview_")]
    others = [name for name in written if not name.startswith("preview_")]
    print(f"Wrote to {out}/:")
    if previews:
        print(f"  {len(previews)} previews  {previews[0]} ... {previews[-1]}")
    for name in others:
        print(f"  {name}")


def _print_timings(
    result: object,
    startup_s: float,
    load_s: float | None,
    first_preview_s: float | None,
    wall_s: float,
) -> None:
    from mrflow_protocol import Result

    assert isinstance(result, Result)
    rows: list[tuple[str, float]] = [("daemon start", startup_s)]
    if "queued" in result.timings:
        rows.append(("waiting in queue", result.timings["queued"]))
    if load_s is not None:
        rows.append(("load model (client)", load_s))
    for stage, label in STAGE_NAMES.items():
        if stage in result.timings:
            rows.append((label, result.timings[stage]))
    if "total" in result.timings:
        rows.append(("generation total", result.timings["total"]))
    if first_preview_s is not None:
        rows.append(("first preview (client)", first_preview_s))
    rows.append(("job, end to end (client)", wall_s))
    print(f"Timings (seed {result.seed}, preset {result.preset}):")
    for label, seconds in rows:
        print(f"  {label:<26} {seconds:8.3f} s")
