"""The quality benchmark: the shape checker over held-out prompt/seed pairs, native against MrFlow.

For each held-out case (caption, seed) it checks:

- ``ground_truth``: the world's own rendering (validates the checker: should pass ~100%);
- ``vae``: that rendering after a VAE round trip through the engine's adapter (the ceiling any
  generation through this VAE can reach);
- each preset (``native``, ``paper``, ...): `MrFlowEngine.generate` at 256 x 256, seed = case seed;
  for a staged preset also its x2-upscaled low-res picture, before the refine step (which of the
  two stages a loss against native starts in).

Per row: all-checks pass rate with a 95% Wilson interval, per-check rates, the median 10-90% edge
width of the checked shapes (sharpness: smaller is sharper), and seconds per image. Presets are
also compared with native pair by pair (prompts both pass, only one passes; the difference with a
95% paired interval) and by speed.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrflow_daemon.builtin import trained_upscaler
from mrflow_daemon.builtin.checker import CHECKS, CheckResult, check_image, edge_width
from mrflow_daemon.builtin.world import EvalCase, eval_cases, render_image

SIZE = 256
GRID_ROWS = 6
# What a model folder's fingerprint covers: configs, the card, tokenizers and weights.
FINGERPRINTED = (".json", ".safetensors", ".bin", ".pt", ".pth", ".txt", ".model")


def wilson_interval(passes: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound near 0% and 100%)."""
    if total == 0:
        return (0.0, 1.0)
    p = passes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference_interval(
    both: int, only_first: int, only_second: int, neither: int
) -> tuple[float, float]:
    """95% interval of (second's pass rate - first's) when both were run on the same cases.

    Newcombe's hybrid score interval for paired proportions: the two Wilson intervals, combined
    through the correlation of the pairs (without a continuity correction). It never leaves
    [-1, 1]. When no pair disagrees it can collapse: [0, 0] for 100 pairs passing both and 100
    failing both (the pairs then correlate perfectly); when every pair passes both (or fails
    both) the correlation is undefined, taken as 0, and the interval is the Wilson width, e.g.
    -1.9 to +1.9 pp for 200 pairs.
    """
    n = both + only_first + only_second + neither
    if n == 0:
        return (-1.0, 1.0)
    first, second = (both + only_first) / n, (both + only_second) / n
    l1, u1 = wilson_interval(both + only_first, n)
    l2, u2 = wilson_interval(both + only_second, n)
    margins = (
        (both + only_first)
        * (only_second + neither)
        * (both + only_second)
        * (only_first + neither)
    )
    phi = (both * neither - only_first * only_second) / math.sqrt(margins) if margins else 0.0
    d1, e1 = first - l1, u1 - first
    d2, e2 = second - l2, u2 - second
    below = math.sqrt(max(0.0, d2 * d2 - 2 * phi * d2 * e1 + e1 * e1))
    above = math.sqrt(max(0.0, e2 * e2 - 2 * phi * e2 * d1 + d1 * d1))
    difference = second - first
    return (max(-1.0, difference - below), min(1.0, difference + above))


@dataclass
class Row:
    """The results of one image source (ground truth, VAE, or a preset) over all cases."""

    name: str
    passed: list[bool] = field(default_factory=list)
    checks: dict[str, list[bool]] = field(default_factory=lambda: {c: [] for c in CHECKS})
    failed: list[list[str]] = field(default_factory=list)  # per case, the checks that failed
    edges: list[float | None] = field(default_factory=list)  # per case; None: nothing to measure
    seconds: list[float] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)  # the first GRID_ROWS, for the grid
    two_shape: list[bool] = field(default_factory=list)
    refine_sigma: float | None = None  # the refine step's start, for a staged preset
    refine_steps: int | None = None  # its Euler steps, for a staged preset
    # Per case, for a staged preset: did the x2-upscaled low-res picture (before the refine step)
    # pass every check? None where it was not checked (other rows; earlier results.json files).
    upscaled_passed: list[bool | None] = field(default_factory=list)

    def add(self, image: Any, case: EvalCase, seconds: float, upscaled: Any = None) -> None:
        result: CheckResult = check_image(image, case.scene)
        failed = [name for name, ok in result.checks().items() if not ok]
        upscaled_ok = check_image(upscaled, case.scene).passed if upscaled is not None else None
        self._append(case, failed, edge_width(image, case.scene, result), seconds, upscaled_ok)
        if len(self.images) < GRID_ROWS:
            self.images.append(image)

    def restore(self, case: EvalCase, record: dict[str, Any]) -> None:
        """One case as an earlier run's results.json recorded it (see `evaluate`'s `extend`)."""
        self._append(
            case,
            list(record["failed"][self.name]),
            record["edge_px"][self.name],
            record["seconds"][self.name],
            record.get("upscaled_passed", {}).get(self.name),
        )

    def _append(
        self,
        case: EvalCase,
        failed: list[str],
        edge: float | None,
        seconds: float,
        upscaled_passed: bool | None = None,
    ) -> None:
        self.passed.append(not failed)
        self.two_shape.append(len(case.scene.shapes) == 2)
        for name in CHECKS:
            self.checks[name].append(name not in failed)
        self.failed.append(failed)
        self.edges.append(edge)
        self.seconds.append(seconds)
        self.upscaled_passed.append(upscaled_passed)

    def summary(self) -> dict[str, Any]:
        total, passes = len(self.passed), sum(self.passed)
        low, high = wilson_interval(passes, total)
        edges = [width for width in self.edges if width is not None]
        return {
            "n": total,
            "all_checks_pass": passes / total if total else None,
            "ci95": [low, high],
            "per_check": {name: sum(v) / len(v) if v else None for name, v in self.checks.items()},
            "edge_width_px_median": statistics.median(edges) if edges else None,
            "two_shapes": self._two_shape_summary(),
            "seconds_per_image_mean": statistics.fmean(self.seconds) if self.seconds else None,
            "seconds_per_image_median": statistics.median(self.seconds) if self.seconds else None,
            "refine_sigma": self.refine_sigma,
            "refine_steps": self.refine_steps,
            "upscaled": self._upscaled_summary(),
        }

    def _upscaled_summary(self) -> dict[str, Any] | None:
        """The low-res stage alone: the pass rate of its x2-upscaled pictures, before the refine
        step, over the cases where they were checked (None for a row without them)."""
        checked = [ok for ok in self.upscaled_passed if ok is not None]
        if not checked:
            return None
        low, high = wilson_interval(sum(checked), len(checked))
        return {
            "n": len(checked),
            "all_checks_pass": sum(checked) / len(checked),
            "ci95": [low, high],
        }

    def _two_shape_summary(self) -> dict[str, Any]:
        """The pass rate over the two-shape cases: the harder part of the set (two colours,
        kinds and places to keep apart)."""
        picked = [ok for ok, two in zip(self.passed, self.two_shape, strict=True) if two]
        low, high = wilson_interval(sum(picked), len(picked))
        return {
            "n": len(picked),
            "all_checks_pass": sum(picked) / len(picked) if picked else None,
            "ci95": [low, high],
        }


def scene_bootstrap_interval(
    first: Sequence[bool],
    second: Sequence[bool],
    scenes: Sequence[Hashable],
    *,
    draws: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile interval of (second's pass rate - first's), resampling whole scenes.

    The cases repeat scenes (other seeds), and a model that cannot draw a scene tends to fail
    all its repeats: resampling scenes, not pairs, widens the interval by what that costs."""
    groups: dict[Hashable, list[int]] = {}
    for a, b, scene in zip(first, second, scenes, strict=True):
        groups.setdefault(scene, []).append(int(b) - int(a))
    totals = [(sum(diffs), len(diffs)) for diffs in groups.values()]
    if not totals:
        return (-1.0, 1.0)
    rng = random.Random(seed)
    samples = []
    for _ in range(draws):
        picked = [totals[rng.randrange(len(totals))] for _ in totals]
        samples.append(sum(d for d, _ in picked) / sum(n for _, n in picked))
    samples.sort()
    return samples[int(0.025 * draws)], samples[int(0.975 * draws) - 1]


def _paired(native: Row, other: Row, scenes: Sequence[Hashable]) -> dict[str, Any]:
    pairs = list(zip(native.passed, other.passed, strict=True))
    both = sum(a and b for a, b in pairs)
    only_native = sum(a and not b for a, b in pairs)
    only_this = sum(b and not a for a, b in pairs)
    low, high = paired_difference_interval(
        both, only_native, only_this, len(pairs) - both - only_native - only_this
    )
    # Where the preset's losses start: was its low-res stage already wrong, or did the refine
    # step break a right one (and the other way round for its wins)?
    stages = list(zip(native.passed, other.passed, other.upscaled_passed, strict=True))
    return {
        "both_pass": both,
        "only_native_passes": only_native,
        "only_this_passes": only_this,
        "only_native_passes_upscaled_failed": sum(a and not b and u is False for a, b, u in stages),
        "only_native_passes_upscaled_passed": sum(a and not b and u is True for a, b, u in stages),
        "only_this_passes_upscaled_failed": sum(b and not a and u is False for a, b, u in stages),
        "difference_pp": 100 * (only_this - only_native) / len(pairs) if pairs else None,
        "difference_ci95_pp": [100 * low, 100 * high],
        "difference_ci95_pp_by_scene": [
            100 * bound for bound in scene_bootstrap_interval(native.passed, other.passed, scenes)
        ],
    }


def _staged_only(preset: str, value: Any) -> Any:
    """A refine option for a staged preset; native has no refine stage."""
    from mrflow_daemon.engine.presets import get_preset

    return value if get_preset(preset).staged else None


def evaluate(
    model: str | Path,
    *,
    n: int = 500,
    presets: Sequence[str] = ("native", "paper"),
    out_dir: str | Path,
    device: str | None = None,
    upscaler: str | Path | None = None,
    guidance: float | None = None,
    refine_sigma: float | None = None,
    refine_steps: int | None = None,
    native_from: str | Path | None = None,
    extend: str | Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write `results.json` and `grid.png` to `out_dir`; returns the results.

    `guidance` overrides the model's default guidance (for the built-in model, its true CFG scale
    from the card; 1 turns true CFG off) for native and every preset alike; `refine_sigma`
    overrides the staged presets' refine sigma and `refine_steps` their refine Euler steps (native
    has neither). `results["cases"]` keeps each
    case's outcome per row, so runs can be compared pair by pair later: `native_from` takes the
    native row from an earlier run's results.json (same model, pairs and guidance) instead of
    sampling it again, which on a CPU is most of the time. `extend` takes every row of an earlier
    run with the same options over fewer pairs (the pairs are a fixed list, so its pairs are
    this run's first) and samples only the rest; the grid then shows the first pairs sampled now.
    """
    import torch

    from mrflow_daemon.engine.families.base import pil_to_tensor, tensor_to_pil
    from mrflow_daemon.engine.pipeline import MrFlowEngine
    from mrflow_daemon.engine.presets import get_preset
    from mrflow_daemon.engine.request import GenerationRequest

    for name in presets:
        get_preset(name)  # unknown names fail here, before anything loads
    repeated = sorted({name for name in presets if presets.count(name) > 1})
    if repeated:
        raise ValueError(f"each preset may be named once; named twice: {', '.join(repeated)}")
    if native_from and extend:
        raise ExtendError("give --extend or --native-from, not both")
    out = Path(out_dir)
    for earlier_file, error in ((native_from, NativeFromError), (extend, ExtendError)):
        if earlier_file and Path(earlier_file).resolve().parent == out.resolve():
            raise error(f"{earlier_file} is in the output folder {out}: give another --out")
    earlier, earlier_native = (
        _native_row(Path(native_from), model, n, guidance, presets) if native_from else ({}, None)
    )
    settings = {
        "guidance": guidance,
        "refine_sigma": refine_sigma,
        "refine_steps": refine_steps,
        "upscaler": str(upscaler) if upscaler is not None else None,  # None: the model's own
    }
    extended = _extended(Path(extend), model, n, presets, settings) if extend else {}
    fingerprint = model_fingerprint(Path(model))
    out.mkdir(parents=True, exist_ok=True)
    if upscaler is None:  # the upscaler trained with the model, when its folder has one
        upscaler = trained_upscaler(Path(model)) if Path(model).is_dir() else None
    engine = MrFlowEngine.from_pretrained(model, device=device, upscaler=upscaler)

    def request(name: str, caption: str = "", seed: int = 0) -> GenerationRequest:
        return GenerationRequest(
            caption,
            SIZE,
            SIZE,
            preset=name,
            seed=seed,
            guidance=guidance,
            refine_sigma=_staged_only(name, refine_sigma),
            refine_steps=_staged_only(name, refine_steps),
            return_stages=get_preset(name).staged,  # the upscaled low-res picture is checked
        )

    if earlier_native is not None:
        _check_comparable(earlier, Path(str(native_from)), engine, fingerprint, NativeFromError)
    if extended:
        _check_comparable(extended, Path(str(extend)), engine, fingerprint, ExtendError)
        for name in presets:  # the card or the presets may have changed since
            plan = engine.plan(request(name))
            was = extended["rows"][name].get("refine_sigma")
            now = plan.refine_sigma if plan.staged else None
            if was != now:
                engine.unload()
                raise ExtendError(
                    f"{extend}: its {name} row was refined from sigma {was}, this run's from {now}"
                )
    cases = eval_cases(n)
    reused = extended.get("cases", [])
    report = on_progress or (lambda _name, _done, _total: None)

    def restored(name: str) -> Row:
        earlier_row = extended["rows"][name] if reused else {}
        row = Row(
            name,
            refine_sigma=earlier_row.get("refine_sigma"),
            refine_steps=earlier_row.get("refine_steps"),
        )
        for case, record in zip(cases, reused, strict=False):
            row.restore(case, record)
        return row

    truth, vae = restored("ground_truth"), restored("vae")
    for index, case in enumerate(cases[len(reused) :], start=len(reused)):
        image = render_image(case.scene, case.placements(), SIZE, SIZE)
        truth.add(image, case, 0.0)
        started = time.perf_counter()
        with torch.no_grad():
            adapter = engine.adapter
            pixels = adapter.decode(adapter.encode(pil_to_tensor(image)), SIZE, SIZE)
        vae.add(tensor_to_pil(pixels), case, time.perf_counter() - started)
        report("ground truth + vae", index + 1, n)

    rows = [truth, vae]
    for name in presets:
        row = restored(name)
        # One untimed warm-up, so the first case does not pay for kernels' first use.
        engine.generate(request(name, cases[len(reused)].caption))
        for index, case in enumerate(cases[len(reused) :], start=len(reused)):
            started = time.perf_counter()
            result = engine.generate(request(name, case.caption, case.seed))
            row.add(result.image, case, time.perf_counter() - started, result.upscaled)
            if result.plan.staged:  # the preset's, the model card's or --refine-sigma/-steps
                row.refine_sigma = result.plan.refine_sigma
                row.refine_steps = result.plan.refine_steps
            report(name, index + 1, n)
        rows.append(row)

    by_name = {row.name: row for row in rows}
    # A scene in either phrasing: the unit the cases repeat.
    scene_keys = [(frozenset(c.scene.shapes), c.scene.background) for c in cases]
    results: dict[str, Any] = {
        "model": str(model),
        "model_name": engine.model_name,
        "model_fingerprint": fingerprint,
        "family": engine.family,
        "device": str(engine.device),
        "dtype": str(engine.dtype),
        "size": [SIZE, SIZE],
        "n": n,
        "scenes": len(set(scene_keys)),
        "guidance": guidance,
        "refine_sigma": refine_sigma,
        "refine_steps": refine_steps,
        "upscaler": settings["upscaler"],
        "rows": {row.name: row.summary() for row in rows},
        "cases": [
            {
                "caption": case.caption,
                "seed": case.seed,
                "failed": {row.name: row.failed[index] for row in rows},
                "edge_px": {row.name: row.edges[index] for row in rows},
                "seconds": {row.name: row.seconds[index] for row in rows},
                "upscaled_passed": {
                    row.name: row.upscaled_passed[index]
                    for row in rows
                    if row.upscaled_passed[index] is not None
                },
            }
            for index, case in enumerate(cases)
        ],
    }
    if extend:
        results["extended_from"] = {"results": str(extend), "n": len(reused)}
    native = by_name.get("native") or earlier_native
    results["native_from"] = str(native_from) if native_from else None
    if native is not None:
        native_time = statistics.fmean(native.seconds)
        results["against_native"] = {
            row.name: {
                **_paired(native, row, scene_keys),
                "speedup": native_time / statistics.fmean(row.seconds),
            }
            for row in rows[2:]
            if row.name != "native"
        }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    write_grid(rows, out / "grid.png")
    engine.unload()
    return results


class NativeFromError(ValueError):
    """`native_from` names results that cannot be compared pair by pair with this run."""


def _native_row(
    path: Path, model: str | Path, n: int, guidance: float | None, presets: Sequence[str]
) -> tuple[dict[str, Any], Row]:
    """An earlier run's results and its native row, checked to be comparable pair by pair with
    this one (the device and dtype are checked once the engine is loaded)."""
    if "native" in presets:
        raise NativeFromError("it replaces the native row: leave native out of --presets")
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        cases, summary = earlier["cases"], earlier["rows"]["native"]
    except (OSError, ValueError, KeyError) as exc:
        raise NativeFromError(f"{path} has no native row to compare with ({exc})") from None
    expected = [(case.caption, case.seed) for case in eval_cases(n)]
    if [(c["caption"], c["seed"]) for c in cases] != expected:
        raise NativeFromError(f"{path} was run on other pairs than --n {n}; use the same --n")
    for key, value in (("model", str(model)), ("guidance", guidance)):
        if earlier.get(key) != value:
            raise NativeFromError(f"{path} was run with {key} {earlier.get(key)!r}, not {value!r}")
    row = Row("native")
    for case, record in zip(eval_cases(n), cases, strict=True):
        if "seconds" in record:
            row.restore(case, record)
        else:  # runs before 2026-11-27 kept only the row's mean time and no edge widths
            row._append(case, record["failed"]["native"], None, summary["seconds_per_image_mean"])
    return earlier, row


def model_fingerprint(model: Path) -> str | None:
    """A SHA-256 over a model folder's weights and configs (its card included), so a run is
    compared only with runs of the same weights: a continuation replaces the files behind one
    path. None for a path that is not a folder."""
    if not model.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(model.rglob("*")):
        if path.is_file() and path.suffix in FINGERPRINTED:
            digest.update(str(path.relative_to(model)).encode() + b"\0")
            with path.open("rb") as handle:  # in pieces: a real model's shards are gigabytes
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _check_comparable(
    earlier: dict[str, Any],
    path: Path,
    engine: Any,
    fingerprint: str | None,
    error: type[ValueError],
) -> None:
    """Speedups and pass rates compare only on the same device and dtype, and the same weights
    (results written before 2026-11-27 have no fingerprint: their weights cannot be checked)."""
    checks: list[tuple[str, str | None]] = [
        ("device", str(engine.device)),
        ("dtype", str(engine.dtype)),
    ]
    if earlier.get("model_fingerprint") is not None:
        checks.append(("model_fingerprint", fingerprint))
    for key, value in checks:
        if earlier.get(key) != value:
            engine.unload()
            what = (
                "other weights or card"
                if key == "model_fingerprint"
                else f"{key} {earlier.get(key)!r}, not {value!r}"
            )
            raise error(f"{path} was run with {what}")


class ExtendError(ValueError):
    """`extend` names results that this run cannot continue."""


def _extended(
    path: Path, model: str | Path, n: int, presets: Sequence[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """An earlier run's results, checked to be this run's first pairs with the same options (the
    device and dtype are checked once the engine is loaded)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        cases, rows = earlier["cases"], earlier["rows"]
    except (OSError, ValueError, KeyError) as exc:
        raise ExtendError(f"{path} holds no results to extend ({exc})") from None
    if not cases or "seconds" not in cases[0]:
        raise ExtendError(
            f"{path} does not keep each pair's edge width and time (runs before 2026-11-27 "
            "did not); it cannot be extended"
        )
    if len(cases) >= n:
        raise ExtendError(f"{path} already has {len(cases)} pairs; give --n above that")
    expected = [(case.caption, case.seed) for case in eval_cases(len(cases))]
    if [(c["caption"], c["seed"]) for c in cases] != expected:
        raise ExtendError(f"{path} was run on other pairs than this run's first {len(cases)}")
    wanted_rows = ["ground_truth", "vae", *presets]
    if list(rows) != wanted_rows:
        raise ExtendError(
            f"{path} has the rows {', '.join(rows)}; extend it with --presets "
            + ",".join(list(rows)[2:])
        )
    if earlier.get("native_from"):
        raise ExtendError(
            f"{path} took its native row from another run (--native-from); only a run that "
            "sampled its own rows can be extended"
        )
    for key, value in (("model", str(model)), *settings.items()):
        if earlier.get(key) != value:
            raise ExtendError(f"{path} was run with {key} {earlier.get(key)!r}, not {value!r}")
    return dict(earlier)


def write_grid(rows: Sequence[Row], path: Path) -> None:
    """Columns: ground truth, VAE, then each preset; one line per case, labels on top."""
    from PIL import Image, ImageDraw

    label_height = 18
    count = min(len(row.images) for row in rows)
    grid = Image.new("RGB", (SIZE * len(rows), label_height + SIZE * count), "white")
    draw = ImageDraw.Draw(grid)
    for column, row in enumerate(rows):
        draw.text((column * SIZE + 4, 3), row.name, fill="black")
        for line, image in enumerate(row.images[:count]):
            grid.paste(
                image.convert("RGB").resize((SIZE, SIZE)),
                (column * SIZE, label_height + line * SIZE),
            )
    grid.save(path)


def format_table(results: dict[str, Any]) -> str:
    lines = [
        f"{results['n']} prompt/seed pairs of {results.get('scenes', '?')} held-out scenes "
        "(intervals treat the pairs as independent)",
        f"{'row':14} {'all checks':>10} {'95% CI':>15} "
        + " ".join(f"{c:>10}" for c in CHECKS)
        + f" {'edge px':>8} {'s/image':>8}",
    ]
    for name, row in results["rows"].items():
        low, high = row["ci95"]
        width = row["edge_width_px_median"]
        lines.append(
            f"{name:14} {100 * row['all_checks_pass']:9.1f}% {100 * low:6.1f}-{100 * high:5.1f}% "
            + " ".join(f"{100 * row['per_check'][c]:9.1f}%" for c in CHECKS)
            + f" {width if width is not None else float('nan'):8.2f} {row['seconds_per_image_mean']:8.3f}"
        )
    for name, row in results["rows"].items():
        two = row.get("two_shapes")
        if two and two["n"] and name not in ("ground_truth", "vae"):
            low, high = two["ci95"]
            lines.append(
                f"{name}: {100 * two['all_checks_pass']:.1f}% ({100 * low:.1f}-{100 * high:.1f}%)"
                f" on the {two['n']} two-shape prompts"
            )
    for name, paired in results.get("against_native", {}).items():
        row = results["rows"][name]
        sigma, steps = row.get("refine_sigma"), row.get("refine_steps")
        refine = f" (refine sigma {sigma:g}{f', {steps} steps' if steps and steps > 1 else ''})"
        lines.append(
            f"{name}{refine if sigma else ''} vs native: "
            f"{paired['difference_pp']:+.1f} pp all-checks "
            f"(95% CI {paired['difference_ci95_pp'][0]:+.1f} to {paired['difference_ci95_pp'][1]:+.1f}; "
            f"resampling scenes {paired['difference_ci95_pp_by_scene'][0]:+.1f} to "
            f"{paired['difference_ci95_pp_by_scene'][1]:+.1f}), "
            f"speedup {paired['speedup']:.2f}x "
            f"(only native passes {paired['only_native_passes']}, only {name} {paired['only_this_passes']})"
        )
        upscaled = row.get("upscaled")
        if upscaled and "only_native_passes_upscaled_failed" in paired:
            lines.append(
                f"{name}: its low-res stage alone (x2-upscaled, before the refine step) passes "
                f"{100 * upscaled['all_checks_pass']:.1f}% of {upscaled['n']}; of the pairs only "
                f"native passes, {paired['only_native_passes_upscaled_failed']} were already wrong "
                f"at low res and the refine step broke {paired['only_native_passes_upscaled_passed']}"
                f"; of those only {name} passes, it mended a wrong low-res picture in "
                f"{paired['only_this_passes_upscaled_failed']}"
            )
    return "\n".join(lines)
