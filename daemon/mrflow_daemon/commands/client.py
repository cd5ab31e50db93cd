"""A headless reference client of the MrFlow daemon.

    mrflow client generate --prompt "a lighthouse at dusk" --width 768 --height 512 --out out/
    mrflow client status | models | load NAME | unload [NAME] | pause | resume
    mrflow client cancel JOB_ID | cancel --all | result JOB_ID --out DIR | shutdown

`generate` prints progress and writes every preview, both stage images and the
result (plus result.json with the seed and per-stage timings) to --out. Ctrl+C
cancels the job. The token comes from the user's token file, as the Krita
plugin's does. Exit status: 0 done, 1 the daemon refused or the job failed,
3 no daemon or the handshake was refused, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrflow_protocol import MODES, LoraRef, Preview, Progress, Queued, Result, StageImage, Status

from mrflow_daemon import paths
from mrflow_daemon.client import (
    DEFAULT_URL,
    AuthenticationError,
    Client,
    ClientError,
    DaemonUnavailable,
    Job,
    JobCancelled,
    JobFailed,
    RequestError,
    connect,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_DAEMON = 3
EXIT_CANCELLED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--url",
        default=os.environ.get("MRFLOW_URL", DEFAULT_URL),
        help=f"the daemon's websocket URL (env MRFLOW_URL; default {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"the token file (default {paths.token_file()})",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a reply (default 30)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    generate = actions.add_parser(
        "generate", help="generate an image, writing every stage to --out"
    )
    add_generate_arguments(generate)

    result = actions.add_parser("result", help="fetch a job's result after a reconnect")
    result.add_argument("job_id")
    result.add_argument("--out", type=Path, required=True, help="folder for the images")

    status = actions.add_parser("status", help="print the daemon's state")
    status.add_argument("--watch", action="store_true", help="print every change until Ctrl+C")
    actions.add_parser("models", help="list installed models and presets")
    load = actions.add_parser("load", help="load a model and keep it resident")
    load.add_argument("model")
    unload = actions.add_parser("unload", help="free a model's memory (default: all)")
    unload.add_argument("model", nargs="?")
    actions.add_parser("pause", help="stop starting queued jobs")
    actions.add_parser("resume", help="start queued jobs again")
    cancel = actions.add_parser("cancel", help="cancel a job")
    target = cancel.add_mutually_exclusive_group(required=True)
    target.add_argument("job_id", nargs="?")
    target.add_argument("--all", action="store_true", help="every job of this client")
    actions.add_parser("shutdown", help="stop the daemon")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument(
        "--mode", choices=MODES, help="default: inpaint with --mask, img2img with --image"
    )
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--preset", help="paper, quality, text, turbo, native (default: paper)")
    parser.add_argument("--steps", type=int, help="low-res (stage-1) steps")
    parser.add_argument("--refine-steps", type=int)
    parser.add_argument("--refine-sigma", type=float)
    parser.add_argument("--scale", type=int, help="low-res stage at target / scale")
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--model", help="an installed model's name (default: the daemon's)")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        type=parse_lora,
        metavar="NAME_OR_PATH[:WEIGHT]",
        help="apply a LoRA (repeatable), e.g. impasto:0.8 or ./style.safetensors",
    )
    parser.add_argument("--strength", type=float, help="img2img / inpaint: how much to change")
    parser.add_argument("--image", type=Path, help="input image (any format Pillow reads)")
    parser.add_argument("--mask", type=Path, help="inpaint mask: white = regenerate")
    parser.add_argument(
        "--front", action="store_true", help="put the job at the front of the queue"
    )
    parser.add_argument("--no-previews", action="store_true", help="progress only, no previews")
    parser.add_argument("--job-id", help="the job id (default: a new random one)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the images")


def parse_lora(text: str) -> LoraRef:
    """`name`, `name:0.8`, `path/to/file.safetensors:0.8` -> LoraRef."""
    spec, weight = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
            spec = head
        except ValueError:
            pass  # a colon inside a path (C:\...) and no weight
    is_path = any(mark in spec for mark in ("/", "\\")) or spec.endswith(
        (".safetensors", ".pt", ".bin")
    )
    return LoraRef(path=spec, weight=weight) if is_path else LoraRef(name=spec, weight=weight)


def run(args: argparse.Namespace) -> int:
    try:
        with connect(args.url, token_file=args.token_file, timeout=args.timeout) as client:
            return ACTIONS[args.action](client, args)
    except (DaemonUnavailable, AuthenticationError) as exc:
        print(f"mrflow client: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    except ClientError as exc:
        print(f"mrflow client: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TimeoutError as exc:
        print(f"mrflow client: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # --out cannot be written, an input cannot be read
        print(f"mrflow client: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- generate / result ----------------------------------------------------------------------


def run_generate(client: Client, args: argparse.Namespace) -> int:
    try:
        args.out.mkdir(parents=True, exist_ok=True)  # a bad --out fails before the job is sent
    except OSError as exc:
        print(f"mrflow client: cannot use --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    job = client.generate(
        args.prompt,
        mode=args.mode,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        preset=args.preset,
        steps=args.steps,
        refine_steps=args.refine_steps,
        refine_sigma=args.refine_sigma,
        scale=args.scale,
        guidance=args.guidance,
        seed=args.seed,
        model=args.model,
        loras=args.lora,
        strength=args.strength,
        image=args.image,
        mask=args.mask,
        front=args.front,
        previews=not args.no_previews,
        job_id=args.job_id,
    )
    print(f"job {job.job_id}")
    return follow(job, args.out)


def run_result(client: Client, args: argparse.Namespace) -> int:
    return follow(client.get_result(args.job_id), args.out)


def follow(job: Job, out: Path) -> int:
    """Print the job's events and write its images to `out` until it ends; Ctrl+C cancels it."""
    out.mkdir(parents=True, exist_ok=True)
    writer = EventWriter(out)
    try:
        for event in job:
            writer.write(event)
    except KeyboardInterrupt:
        print("\ncancelling…", file=sys.stderr)
        job.cancel()
        for event in job:  # the rest, up to the `cancelled` error (or a result that won the race)
            writer.write(event)
    try:
        result = job.outcome()
    except JobCancelled:
        print(f"job {job.job_id} cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except JobFailed as exc:
        print(f"job {job.job_id} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    timings = " ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    print(
        f"done: {out / 'result.png'} ({result.width}x{result.height}, seed {result.seed}) {timings}"
    )
    return EXIT_OK


class EventWriter:
    """Prints one line per event and saves every image the job sends."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def write(self, event: object) -> None:
        if isinstance(event, Queued):
            print(f"queued: {event.position} job(s) ahead" if event.position else "queued: next")
        elif isinstance(event, Progress):
            print(progress_line(event))
        elif isinstance(event, Preview):
            ext = "jpg" if event.format == "jpeg" else event.format
            (self.out / f"preview-{event.step:03d}.{ext}").write_bytes(event.image)
        elif isinstance(event, StageImage):
            path = self.out / f"{event.kind}.png"
            path.write_bytes(event.image)
            print(f"stage image: {path} ({event.width}x{event.height})")
        elif isinstance(event, Result):
            (self.out / "result.png").write_bytes(event.image)
            summary = {
                "job_id": event.job_id,
                "seed": event.seed,
                "width": event.width,
                "height": event.height,
                "model": event.model,
                "preset": event.preset,
                "timings": event.timings,
            }
            (self.out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")


def progress_line(event: Progress) -> str:
    parts = [event.stage]
    if event.total:
        parts.append(f"{event.step}/{event.total}")
    if event.percent is not None:
        parts.append(f"{event.percent:5.1f}%")
    if event.eta is not None:
        parts.append(f"eta {event.eta:.1f}s")
    return "  ".join(parts)


# -- daemon control -------------------------------------------------------------------------


def run_status(client: Client, args: argparse.Namespace) -> int:
    if not args.watch:
        print(status_line(client.status()))
        return EXIT_OK
    print(status_line(client.subscribe_status(lambda status: print(status_line(status)))))
    try:
        while not client.closed:  # the reader thread prints; this one waits for Ctrl+C
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def status_line(status: Status) -> str:
    parts = [status.state]
    if status.job_id:
        percent = f" {status.percent:.0f}%" if status.percent is not None else ""
        parts.append(f"job {status.job_id} {status.stage or ''}{percent}".rstrip())
    parts.append(f"queue {status.queue_length}")
    parts.append(f"model {status.loaded_model or '-'}")
    if status.memory:
        parts.append(
            f"memory {status.memory.used / 2**30:.1f}/{status.memory.total / 2**30:.1f} GiB"
        )
    parts.append(f"clients {status.clients}")
    return "  ".join(parts)


def run_models(client: Client, args: argparse.Namespace) -> int:
    models = client.models()
    welcome = client.welcome
    print("models:")
    for model in models.models:
        marks = [
            m
            for m, on in (("default", model.name == models.default_model), ("loaded", model.loaded))
            if on
        ]
        if model.refine_sigma is not None:
            marks.append(f"refines from sigma {model.refine_sigma:g} in the staged presets")
        note = f"  ({', '.join(marks)})" if marks else ""
        print(f"  {model.name:24} {model.family or '?':14} {model.description}{note}")
    print("presets:")
    for preset in welcome.presets:
        mark = "  (default)" if preset.name == welcome.default_preset else ""
        print(f"  {preset.name:10} {preset.description}{mark}")
    return EXIT_OK


def simple(
    call: Callable[[Client, argparse.Namespace], Any], done: str
) -> Callable[[Client, argparse.Namespace], int]:
    def action(client: Client, args: argparse.Namespace) -> int:
        try:
            call(client, args)
        except RequestError as exc:
            print(f"mrflow client: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(done.format(args=args))
        return EXIT_OK

    return action


def _cancel(client: Client, args: argparse.Namespace) -> None:
    if args.all:
        client.cancel_all()
    else:
        client.cancel(args.job_id)


ACTIONS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "generate": run_generate,
    "result": run_result,
    "status": run_status,
    "models": run_models,
    "load": simple(lambda c, a: c.load_model(a.model), "loaded {args.model}"),
    "unload": simple(lambda c, a: c.unload_model(a.model), "unloaded"),
    "pause": simple(lambda c, a: c.pause(), "paused"),
    "resume": simple(lambda c, a: c.resume(), "resumed"),
    "cancel": simple(_cancel, "cancel requested"),
    "shutdown": simple(lambda c, a: c.shutdown(), "the daemon is shutting down"),
}
