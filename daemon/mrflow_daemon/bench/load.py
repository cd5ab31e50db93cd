"""Load-test the daemon: N clients submitting jobs on loopback for a fixed time.

    mrflow bench load --clients 4 --seconds 30

Starts `mrflow serve` as a separate process (so its memory is its own) on a
free loopback port, with a private MRFLOW_HOME and the built-in model,
warms it up with one job, then runs N client threads for --seconds. Each
client is a real websocket connection through the reference client library
and keeps one job in flight (submit, stream every event, submit the next).
Reported: jobs completed, errors (expected 0), time to first preview as the
client sees it (queue wait included: one GPU worker serves every client),
job latency, throughput, and the daemon's resident memory at start, after the
warm-up (model loaded) and after the run. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CPU_UPSCALER = "realesr-animevideov3-x2"
START_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--clients", dest="load_clients", type=int, default=4, help="concurrent clients (default 4)"
    )
    parser.add_argument(
        "--seconds",
        dest="load_seconds",
        type=float,
        default=30.0,
        help="how long clients keep submitting (default 30)",
    )
    parser.add_argument(
        "--size",
        dest="load_size",
        type=int,
        default=128,
        help="square job size in pixels (default 128)",
    )
    parser.add_argument(
        "--steps", dest="load_steps", type=int, default=4, help="low-res steps per job (default 4)"
    )
    parser.add_argument(
        "--model", dest="load_model", default="builtin", help="model (default: the built-in one)"
    )
    parser.add_argument(
        "--device",
        dest="load_device",
        default="",
        help="daemon device (default: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--upscaler",
        dest="load_upscaler",
        default=None,
        help=f"upscaler (default: {CPU_UPSCALER} on a CPU, the daemon default on a GPU)",
    )


@dataclass
class ClientStats:
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_preview_s: list[float] = field(default_factory=list)
    job_s: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    from mrflow_daemon.server.system import process_rss_bytes

    return process_rss_bytes(pid)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _client_loop(
    url: str, token: str, index: int, args: argparse.Namespace, deadline: float, stats: ClientStats
) -> None:
    from mrflow_protocol import Error, Preview

    from mrflow_daemon.client import ClientError, connect

    try:
        client = connect(url, token=token, client_name=f"load-{index}", timeout=60)
    except ClientError as exc:
        stats.errors[f"connect: {exc}"] = stats.errors.get(f"connect: {exc}", 0) + 1
        return
    with client:
        number = 0
        while time.monotonic() < deadline:
            number += 1
            submitted = time.monotonic()
            try:
                job = client.generate(
                    f"load test {index}.{number}",
                    width=args.load_size,
                    height=args.load_size,
                    steps=args.load_steps,
                    seed=number,
                    job_id=f"load-{index}-{number}",
                )
                first: float | None = None
                for event in job.events(timeout=DRAIN_TIMEOUT_S):
                    if isinstance(event, Preview) and first is None:
                        first = time.monotonic() - submitted
                    if isinstance(event, Error):
                        stats.errors[event.code] = stats.errors.get(event.code, 0) + 1
            except (ClientError, TimeoutError) as exc:
                key = type(exc).__name__
                stats.errors[key] = stats.errors.get(key, 0) + 1
                continue
            if job.result is not None:
                stats.completed += 1
                stats.job_s.append(time.monotonic() - submitted)
                if first is not None:
                    stats.first_preview_s.append(first)


def run(args: argparse.Namespace) -> int:
    from mrflow_daemon.client import ClientError, connect

    if args.load_clients < 1 or args.load_seconds <= 0:
        print("mrflow bench load: --clients must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    upscaler = args.load_upscaler
    if upscaler is None:
        upscaler = CPU_UPSCALER if _cpu_only(args.load_device) else ""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mrflow-load-") as home:
        env = {**os.environ, "MRFLOW_HOME": home, "OMP_WAIT_POLICY": "PASSIVE"}
        command = [
            sys.executable, "-m", "mrflow_daemon.cli", "serve",
            "--port", str(port), "--model", args.load_model, "--log-level", "warning",
            "--max-queued-jobs", "4", "--max-queue-total", str(max(64, 4 * args.load_clients)),
        ]  # fmt: skip
        if upscaler:
            command += ["--upscaler", upscaler]
        if args.load_device:
            command += ["--device", args.load_device]
        daemon = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            url = f"ws://127.0.0.1:{port}"
            token_file = Path(home) / "config" / "token"
            started = time.monotonic()
            client = None
            while client is None:
                if daemon.poll() is not None:
                    print(
                        f"the daemon exited early:\n{daemon.stderr.read() if daemon.stderr else ''}",
                        file=sys.stderr,
                    )
                    return 1
                if time.monotonic() - started > START_TIMEOUT_S:
                    print("the daemon did not start in time", file=sys.stderr)
                    return 1
                try:
                    client = connect(url, token_file=token_file, client_name="load-control")
                except ClientError:
                    time.sleep(0.25)
            token = token_file.read_text().strip()
            rss_start = rss_bytes(daemon.pid)
            print(
                f"daemon pid {daemon.pid} on {url}; device {client.welcome.device}; warming up ...",
                flush=True,
            )
            warm = time.monotonic()
            client.generate(
                "warm-up", width=args.load_size, height=args.load_size, steps=args.load_steps
            ).wait(DRAIN_TIMEOUT_S)
            warm_s = time.monotonic() - warm
            rss_warm = rss_bytes(daemon.pid)

            print(f"{args.load_clients} clients for {args.load_seconds:g} s ...", flush=True)
            stats = [ClientStats() for _ in range(args.load_clients)]
            deadline = time.monotonic() + args.load_seconds
            began = time.monotonic()
            threads = [
                threading.Thread(
                    target=_client_loop, args=(url, token, i, args, deadline, stats[i])
                )
                for i in range(args.load_clients)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.load_seconds + DRAIN_TIMEOUT_S)
            elapsed = time.monotonic() - began
            rss_end = rss_bytes(daemon.pid)
            client.shutdown()
            client.close()
            exit_code = daemon.wait(60)
        finally:
            if daemon.poll() is None:
                daemon.terminate()
                daemon.wait(30)

    report = _report(
        args, stats, elapsed, warm_s, rss_start, rss_warm, rss_end, exit_code, upscaler
    )
    return 0 if report["errors"] == 0 and exit_code == 0 else 1


def _cpu_only(device: str) -> bool:
    if device:
        return device.startswith("cpu")
    import torch

    return not torch.cuda.is_available()


def _report(
    args: argparse.Namespace,
    stats: list[ClientStats],
    elapsed: float,
    warm_s: float,
    rss_start: int,
    rss_warm: int,
    rss_end: int,
    exit_code: int,
    upscaler: str,
) -> dict[str, Any]:
    first = [s for c in stats for s in c.first_preview_s]
    jobs = [s for c in stats for s in c.job_s]
    errors: dict[str, int] = {}
    for c in stats:
        for code, count in c.errors.items():
            errors[code] = errors.get(code, 0) + count
    mib = 1024 * 1024
    report: dict[str, Any] = {
        "clients": args.load_clients,
        "seconds": round(elapsed, 2),
        "size": args.load_size,
        "steps": args.load_steps,
        "model": args.load_model,
        "upscaler": upscaler or "default",
        "jobs_completed": sum(c.completed for c in stats),
        "errors": sum(errors.values()),
        "error_codes": errors,
        "jobs_per_s": round(sum(c.completed for c in stats) / elapsed, 3),
        "first_preview_p50_s": round(percentile(first, 50), 3),
        "first_preview_p95_s": round(percentile(first, 95), 3),
        "job_p50_s": round(percentile(jobs, 50), 3),
        "job_p95_s": round(percentile(jobs, 95), 3),
        "warmup_s": round(warm_s, 2),
        "rss_start_mib": round(rss_start / mib, 1),
        "rss_after_warmup_mib": round(rss_warm / mib, 1),
        "rss_after_run_mib": round(rss_end / mib, 1),
        "daemon_exit_code": exit_code,
    }
    rows = [
        ("clients", f"{report['clients']}"),
        ("duration", f"{report['seconds']} s"),
        ("job", f"{args.load_size}x{args.load_size}, {args.load_steps}+1 steps, {args.load_model}"),
        ("jobs completed", f"{report['jobs_completed']} ({report['jobs_per_s']} jobs/s)"),
        ("errors", f"{report['errors']} {errors or ''}".strip()),
        (
            "first preview p50 / p95",
            f"{report['first_preview_p50_s']} / {report['first_preview_p95_s']} s",
        ),
        ("job latency p50 / p95", f"{report['job_p50_s']} / {report['job_p95_s']} s"),
        ("daemon RSS start", f"{report['rss_start_mib']} MiB"),
        ("daemon RSS after warm-up", f"{report['rss_after_warmup_mib']} MiB"),
        ("daemon RSS after the run", f"{report['rss_after_run_mib']} MiB"),
        ("daemon exit code", f"{exit_code}"),
    ]
    for label, value in rows:
        print(f"  {label:<26} {value}")
    print(json.dumps(report))
    return report
