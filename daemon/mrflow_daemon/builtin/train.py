"""Train the built-in model: VAE, x2 upscaler, text reading, then the transformer with its text encoders.

    trainer = Trainer(config, out_dir, device="cuda", time_budget=300)
    summary = trainer.run()          # resumes from out_dir/checkpoints when asked

Writes, under `out_dir`:

- ``checkpoints/{vae,upscaler,text,transformer}.pt``: each part's state (weights, optimizer, EMA,
  step, seconds spent), saved every `checkpoint_every` seconds and when the part ends; a part
  marked done is loaded, not retrained, by a resumed run;
  with `reuse_parts`, the VAE, upscaler and text checkpoints are written from an exported model
  instead, marked done, and only the transformer trains (a new transformer recipe in 80% of the
  time), from scratch or, with `continue_transformer`, from the exported transformer;
- ``model/``: the finished FluxPipeline folder (fp16 safetensors) with ``upscaler/`` beside the
  components and ``builtin.json`` describing how it was trained;
- ``train_log.jsonl``: one line of losses per logging interval; ``summary.json``: the final
  numbers (losses, steps, speeds, quick quality metrics).

The same code runs on a CPU (fp32) and on CUDA (bf16 autocast). A time budget, when given, is
split across the four parts by `config.time_shares`; otherwise each part runs its step count,
capped on a CPU by `config.cpu_time_cap`.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mrflow_daemon.builtin import CARD_FILE
from mrflow_daemon.builtin.checker import check_image
from mrflow_daemon.builtin.config import HIGH_BUCKETS, TrainConfig, for_gpu
from mrflow_daemon.builtin.data import (
    crop_batch,
    kind_labels,
    pick_size,
    shape_tokens,
    step_generator,
    step_rng,
    training_batch,
)
from mrflow_daemon.builtin.kind_loss import KindHead
from mrflow_daemon.builtin.models import count_parameters, make_pipeline, make_upscaler
from mrflow_daemon.builtin.reading import ReadingHeads, reading_targets
from mrflow_daemon.builtin.world import eval_cases, render_batch, render_image, sample_train_scene

log = logging.getLogger(__name__)

PARTS = ("vae", "upscaler", "text", "transformer")
UPSCALER_FILE = "upscaler/realesr-shapes-x2.safetensors"  # matches builtin.UPSCALER_GLOB
LOG_EVERY = 25  # steps between train_log.jsonl lines
MAX_SKIPPED_IN_A_ROW = 20
CARD_ONLY_FIELDS = ("true_cfg_scale", "refine_sigma")  # written to the card, not trained on


class ResumeMismatch(ValueError):
    """A checkpoint in the run folder was trained with other settings than this run's."""


@dataclass
class PartState:
    step: int = 0
    seconds: float = 0.0
    done: bool = False
    losses: list[float] = field(default_factory=list)  # mean loss per logging interval
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0  # updates dropped for a non-finite loss or gradient
    error: str | None = None  # what stopped the part early, if anything did


def _to_pil(image: torch.Tensor):  # [3, H, W] in [0, 1] -> PIL
    from PIL import Image

    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
    return Image.fromarray(array, "RGB")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.float().clamp(0, 1), b.float().clamp(0, 1)).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


class Ema:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone().float() for m in modules for p in m.parameters()]

    def update(self, modules: list[torch.nn.Module], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            params = [p for m in modules for p in m.parameters()]
            for shadow, param in zip(self.shadow, params, strict=True):
                shadow.lerp_(param.detach().float(), 1 - decay)

    def copy_to(self, modules: list[torch.nn.Module]) -> None:
        with torch.no_grad():
            params = [p for m in modules for p in m.parameters()]
            for shadow, param in zip(self.shadow, params, strict=True):
                param.copy_(shadow.to(param.dtype))


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        device: str = "cpu",
        time_budget: float | None = None,
        resume: bool = False,
        progress: bool = True,
        precision: str = "auto",
        keep_going: bool = True,
        reuse_parts: str | Path | None = None,
        continue_transformer: bool = False,
    ) -> None:
        # Arguments first: a mistake must not cost the previous run's log or a pipeline build.
        if continue_transformer and reuse_parts is None:
            raise ValueError("continue_transformer needs reuse_parts: the model to continue")
        if reuse_parts is not None and not (Path(reuse_parts) / "model_index.json").is_file():
            raise ValueError(f"{reuse_parts} is not an exported model folder (no model_index.json)")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r}; allowed: auto, fp32, bf16")
        # Mixed precision: bf16 autocast on CUDA by default; on a CPU only when asked (tests
        # use it to exercise the GPU run's dtype handling without a GPU).
        self.bf16 = precision == "bf16" or (precision == "auto" and self.cuda)
        if self.cuda:
            config = for_gpu(config)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True  # ten fixed bucket shapes: tune each once
            # cuDNN's fused attention fails in the backward pass at this head width (48) on an
            # H200 with torch 2.11 ("mha_graph.execute ... is_good()", then illegal memory
            # accesses); flash and memory-efficient attention train fine.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.config = config
        self.out = Path(out_dir)
        self.time_budget = time_budget
        self.resume = resume
        self.progress = progress
        # A part that fails mid-way (out of memory, diverged) keeps what it trained, is recorded
        # in the summary, and the run goes on to export: a one-shot GPU run always yields a model.
        self.keep_going = keep_going
        self.states = {part: PartState() for part in PARTS}
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)

        from diffusers.utils import logging as diffusers_logging

        # The CLIP tokenizer warns on every caption longer than its 77 byte tokens; the T5
        # encoder carries the whole caption, so the truncated CLIP view is expected.
        diffusers_logging.set_verbosity_error()
        torch.manual_seed(config.seed)
        self.pipe = make_pipeline(config)
        self.upscaler = make_upscaler(config)
        self._finished_ema: Ema | None = None
        self.pipe.to(self.device)
        self.upscaler.to(self.device)
        # Parts whose checkpoints come from an exported model: loaded even without `resume`.
        self.reused: set[str] = set()
        if reuse_parts is not None:  # first: a model that does not fit must not cost the old log
            self._reuse_parts(Path(reuse_parts), continue_transformer)
        if not resume:
            # A fresh run: an earlier run's checkpoints in this folder would be loaded as this
            # run's finished parts by a later --resume, mixing two models without a word.
            for path in (self.out / "checkpoints").glob("*.pt"):
                if path.stem not in self.reused:
                    path.unlink()
            (self.out / "train_log.jsonl").unlink(missing_ok=True)

    # -- bookkeeping ---------------------------------------------------------------------------

    def allowance(self, part: str) -> float:
        """Seconds this part may use: its share of the time budget, or of the CPU cap."""
        share = self.config.time_shares[PARTS.index(part)]
        if self.time_budget is not None:
            return share * self.time_budget
        # The shares leave the same 5% for export and checks as with --time-budget.
        return share * self.config.cpu_time_cap if not self.cuda else math.inf

    def max_steps(self, part: str) -> int:
        steps = {
            "vae": self.config.vae.steps,
            "upscaler": self.config.upscaler.steps,
            "text": self.config.text.reading_steps,
            "transformer": self.config.transformer.steps,
        }[part]
        if self.time_budget is not None and self.cuda:
            return 10**9  # the clock decides
        return steps

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _log_line(self, record: dict[str, Any]) -> None:
        with open(self.out / "train_log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _checkpoint_path(self, part: str) -> Path:
        return self.out / "checkpoints" / f"{part}.pt"

    def _recipe(self, part: str) -> dict[str, Any]:
        """What a part's checkpoint was trained with: resuming must not change it."""
        section: Any = {
            "vae": self.config.vae,
            "upscaler": self.config.upscaler,
            "text": self.config.text,
            "transformer": self.config.transformer,
        }[part]
        return {"config": self.config.name, "seed": self.config.seed, **asdict(section)}

    def _save(self, part: str, payload: dict[str, Any]) -> None:
        payload = {**payload, "state": asdict(self.states[part]), "recipe": self._recipe(part)}
        path = self._checkpoint_path(part)
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint

    def _load(self, part: str) -> dict[str, Any] | None:
        path = self._checkpoint_path(part)
        if not ((self.resume or part in self.reused) and path.exists()):
            return None
        payload = torch.load(path, map_location=self.device, weights_only=False)
        saved, wanted = payload.get("recipe"), self._recipe(part)
        if saved is not None:  # how the model is sampled may change; how it trains may not
            saved = {k: v for k, v in saved.items() if k not in CARD_ONLY_FIELDS}
            wanted = {k: v for k, v in wanted.items() if k not in CARD_ONLY_FIELDS}
        if saved is not None and saved != wanted:  # checkpoints before 2026-11-27 have none
            differing = ", ".join(
                f"{key} {saved.get(key)!r} (now {wanted.get(key)!r})"
                for key in sorted(set(saved) | set(wanted))
                if saved.get(key) != wanted.get(key)
            )
            raise ResumeMismatch(
                f"{path}: its {part} was trained with {differing}; resume with the options it "
                "started with, or start a fresh run in another --out"
            )
        self.states[part] = PartState(**payload["state"])
        self._forget_log_after(part, self.states[part].step)
        return payload

    def _forget_log_after(self, part: str, step: int) -> None:
        """Drop the log lines of `part` past `step`: a resumed run logs those steps again."""
        log_file = self.out / "train_log.jsonl"
        if not log_file.exists():
            return
        kept = [
            line
            for line in log_file.read_text(encoding="utf-8").splitlines()
            if not (
                (record := json.loads(line)).get("part") == part and record.get("step", 0) > step
            )
        ]
        log_file.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")

    def _reuse_parts(self, model_dir: Path, continue_transformer: bool) -> None:
        """Checkpoint the VAE, upscaler and text encoders of an exported model as finished parts,
        and with `continue_transformer` start the transformer from the model's (its EMA weights;
        a fresh optimizer and schedule).

        The model must have this config's sizes (a mismatch fails here, naming the part). A
        resumed run keeps checkpoints already written, so its parts are never reloaded twice.
        """
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from safetensors.torch import load_file
        from transformers import CLIPTextModel, T5EncoderModel
        from transformers.utils import logging as transformers_logging

        def load_into(part: str, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
            try:
                module.load_state_dict(state)
            except RuntimeError as exc:
                raise ValueError(
                    f"{model_dir}: its {part} does not match config {self.config.name!r}: {exc}"
                ) from None

        transformers_logging.disable_progress_bar()  # one "Loading weights" bar per encoder
        if continue_transformer:  # a resumed run's transformer checkpoint, if any, replaces it
            exported = FluxTransformer2DModel.from_pretrained(model_dir, subfolder="transformer")
            load_into("transformer", self.pipe.transformer, exported.state_dict())
            self.states["transformer"].metrics["continued_from"] = str(model_dir)
        wanted = ("vae", "upscaler", "text")
        self.reused = set(wanted)
        if self.resume and all(self._checkpoint_path(p).exists() for p in wanted):
            return
        note = {"reused_from": str(model_dir)}

        vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
        load_into("vae", self.pipe.vae, vae.state_dict())
        stats = {k: vae.config[k] for k in ("scaling_factor", "shift_factor")}
        self.pipe.vae.register_to_config(**stats)
        encoders = [self.pipe.text_encoder, self.pipe.text_encoder_2]
        for name, cls, module in zip(
            ("text_encoder", "text_encoder_2"),
            (CLIPTextModel, T5EncoderModel),
            encoders,
            strict=True,
        ):
            load_into(name, module, cls.from_pretrained(model_dir, subfolder=name).state_dict())
        upscaler_file = model_dir / UPSCALER_FILE
        if not upscaler_file.is_file():
            raise ValueError(f"{model_dir} has no upscaler at {UPSCALER_FILE}")
        load_into("upscaler", self.upscaler, load_file(str(upscaler_file)))
        for part in wanted:
            self.states[part] = PartState(done=True, metrics=dict(note))
        self._save("vae", {"model": self.pipe.vae.state_dict(), "latent_stats": stats})
        self._save("upscaler", {"model": self.upscaler.state_dict()})
        self._save("text", {"models": [m.state_dict() for m in encoders]})

    def _loop(
        self,
        part: str,
        step_fn: Callable[[int, float], float | None],
        save_fn: Callable[[], None],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Run `step_fn(step, progress)` until the part's steps or time run out, then
        `on_done()` (work the finished part needs, such as the VAE's latent statistics) before
        the part is saved as done, so a run stopped in between redoes it when resumed."""
        state = self.states[part]
        max_steps, allowance = self.max_steps(part), self.allowance(part)
        total = max_steps if max_steps < 10**9 else None
        bar = tqdm(
            total=total,
            initial=state.step,
            desc=part,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        window: list[float] = []
        last_save = time.monotonic()
        skipped_in_a_row = 0
        try:
            while state.step < max_steps and state.seconds < allowance:
                started = time.monotonic()
                progress = max(state.step / max_steps, state.seconds / allowance)
                loss = step_fn(state.step, min(progress, 1.0))
                state.step += 1
                state.seconds += time.monotonic() - started
                bar.update(1)
                if loss is None:
                    state.skipped += 1
                    skipped_in_a_row += 1
                    if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                        raise FloatingPointError(
                            f"{part}: {skipped_in_a_row} updates in a row had a non-finite loss "
                            "or gradient; lower the learning rate"
                        )
                    continue
                skipped_in_a_row = 0
                window.append(loss)
                if len(window) == LOG_EVERY:
                    mean = sum(window) / len(window)
                    state.losses.append(mean)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    record = {"part": part, "step": state.step, "loss": mean}
                    self._log_line({**record, "seconds": round(state.seconds, 1)})
                    window.clear()
                every = self.config.checkpoint_every
                if every and time.monotonic() - last_save > every:
                    save_fn()
                    last_save = time.monotonic()
        except Exception as exc:  # keep what was trained; the summary says why
            if not self.keep_going:
                raise
            log.exception("%s stopped at step %d", part, state.step)
            state.error = f"{type(exc).__name__}: {exc}"
        finally:
            bar.close()
        if window:
            state.losses.append(sum(window) / len(window))
        if on_done is not None:
            on_done()
        state.done = True
        save_fn()

    def _apply(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        lr: float,
    ) -> float | None:
        """One optimizer update; None (and no update) when the loss or gradient is not finite."""
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        if not torch.isfinite(norm):
            optimizer.zero_grad(set_to_none=True)
            return None
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return float(loss.item())

    def _measure(self, part: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A part's quality numbers; a failure to measure is logged, never fatal to the run."""
        try:
            return measure()
        except Exception as exc:
            if not self.keep_going:
                raise
            log.exception("measuring %s failed", part)
            return {"error": f"{type(exc).__name__}: {exc}"}

    # -- part 1: VAE ---------------------------------------------------------------------------

    def train_vae(self) -> None:
        vae = self.pipe.vae
        cfg = self.config.vae
        params = list(vae.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        payload = self._load("vae")
        if payload is not None:
            vae.load_state_dict(payload["model"])
            if "optimizer" in payload:  # absent from a reused part's checkpoint
                optimizer.load_state_dict(payload["optimizer"])
            vae.register_to_config(**payload["latent_stats"])
        if self.states["vae"].done:
            return

        def step(index: int, progress: float) -> float | None:
            rng = step_rng(self.config.seed, "vae", index)
            size = pick_size(rng, 0.5)
            patches = cfg.crop > 0 and progress < 1 - cfg.whole_fraction
            count = cfg.batch_size if patches or not cfg.crop else cfg.whole_batch_size
            batch = training_batch(rng, size, count, self.device)
            images = crop_batch(rng, batch, cfg.crop) if patches else batch.images
            x = images * 2 - 1
            generator = step_generator(self.config.seed, "vae", index, self.device)
            with self.autocast():
                posterior = vae.encode(x).latent_dist
                z = posterior.sample(generator=generator)
                recon = vae.decode(z).sample.float()
            # Flat colours dominate this world: besides the pixel losses, penalise the 8x8 mean
            # colour, so hues cannot drift (the prototype's blue turned purple).
            loss = (
                F.l1_loss(recon, x)
                + F.mse_loss(recon, x)
                + cfg.colour_weight * F.mse_loss(F.avg_pool2d(recon, 8), F.avg_pool2d(x, 8))
                + cfg.kl_weight * posterior.kl().float().mean() / z[0].numel()
            )
            return self._apply(loss, optimizer, params, cfg.lr * _schedule(index, progress, 100))

        def save() -> None:
            self._save(
                "vae",
                {
                    "model": vae.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "latent_stats": {
                        "scaling_factor": vae.config.scaling_factor,
                        "shift_factor": vae.config.shift_factor,
                    },
                },
            )

        vae.train()

        def measure() -> None:
            vae.eval()
            vae.register_to_config(**self._latent_stats())  # part of the model: exported
            self.states["vae"].metrics = self._measure("vae", self._vae_metrics)

        self._loop("vae", step, save, on_done=measure)

    @torch.no_grad()
    def _latent_stats(self) -> dict[str, float]:
        """FLUX normalises latents as (z - shift) * scale: measure both on fresh pictures."""
        rng = step_rng(self.config.seed, "latent-stats", 0)
        latents = []
        for _ in range(max(1, self.config.metric_images // 16)):
            batch = training_batch(
                rng, HIGH_BUCKETS[0], min(16, self.config.metric_images), self.device
            )
            with self.autocast():
                latents.append(
                    self.pipe.vae.encode(batch.images * 2 - 1).latent_dist.mode().float()
                )
        z = torch.cat(latents)
        return {"shift_factor": float(z.mean()), "scaling_factor": float(1.0 / z.std())}

    @torch.no_grad()
    def _vae_metrics(self) -> dict[str, float]:
        """PSNR and checker pass rate of held-out ground truth after a VAE round trip at 256 px."""
        count = self.config.metric_images
        cases = eval_cases(count, seed=7)
        scenes = [c.scene for c in cases]
        images = render_batch(scenes, [c.placements() for c in cases], 256, 256, device=self.device)
        recon = []
        for chunk in images.split(16):
            with self.autocast():
                latent = self.pipe.vae.encode(chunk * 2 - 1).latent_dist.mode()
                recon.append(((self.pipe.vae.decode(latent).sample.float() + 1) / 2).clamp(0, 1))
        recon_all = torch.cat(recon)
        passes = sum(
            check_image(_to_pil(r), s).passed for r, s in zip(recon_all, scenes, strict=True)
        )
        return {"psnr_db": psnr(recon_all, images), "gt_pass_after_vae": passes / count}

    # -- part 2: the x2 upscaler ---------------------------------------------------------------

    def train_upscaler(self) -> None:
        cfg = self.config.upscaler
        model = self.upscaler
        params = list(model.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        payload = self._load("upscaler")
        if payload is not None:
            model.load_state_dict(payload["model"])
            if "optimizer" in payload:
                optimizer.load_state_dict(payload["optimizer"])
        if self.states["upscaler"].done:
            return
        vae = self.pipe.vae

        def step(index: int, progress: float) -> float | None:
            rng = step_rng(self.config.seed, "upscaler", index)
            batch = training_batch(rng, pick_size(rng, 0.0), cfg.batch_size, self.device)
            # Even patch sizes only: the low-res input is exactly half.
            high = crop_batch(rng, batch, cfg.crop // 2 * 2) if cfg.crop else batch.images
            low = self._degrade(high, vae, rng)
            with self.autocast():
                pred = model(low).float()
            loss = F.l1_loss(pred, high)
            return self._apply(loss, optimizer, params, cfg.lr * _schedule(index, progress, 50))

        def save() -> None:
            self._save(
                "upscaler", {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            )

        model.train()
        self._loop("upscaler", step, save)
        model.eval()
        self.states["upscaler"].metrics = self._measure("upscaler", self._upscaler_metrics)
        save()

    @torch.no_grad()
    def _degrade(self, high: torch.Tensor, vae: Any, rng: random.Random) -> torch.Tensor:
        """The low-res input the upscaler sees in MrFlow: a half-size picture, half the time
        passed through the VAE as the low-res stage's decode would."""
        low = F.interpolate(high, scale_factor=0.5, mode="area")
        if rng.random() < 0.5:
            with self.autocast():
                latent = vae.encode(low * 2 - 1).latent_dist.mode()
                low = ((vae.decode(latent).sample.float() + 1) / 2).clamp(0, 1)
        return low

    @torch.no_grad()
    def _upscaler_metrics(self) -> dict[str, float]:
        cases = eval_cases(self.config.metric_images, seed=11)
        high = render_batch(
            [c.scene for c in cases], [c.placements() for c in cases], 256, 256, device=self.device
        )
        low = F.interpolate(high, scale_factor=0.5, mode="area")
        with self.autocast():
            pred = self.upscaler(low).float()
        bicubic = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False)
        return {"psnr_db": psnr(pred, high), "bicubic_psnr_db": psnr(bicubic, high)}

    # -- part 3: text reading ------------------------------------------------------------------

    def _reading_batch(
        self, scenes: list[Any], heads: ReadingHeads
    ) -> tuple[torch.Tensor, dict[str, float]]:
        targets = reading_targets(self.pipe.tokenizer_2, scenes, self.config.text.t5_max_length).to(
            self.device
        )
        with self.autocast():
            hidden = self.pipe.text_encoder_2(targets.input_ids).last_hidden_state
            pooled = self.pipe._get_clip_prompt_embeds(
                [scene.caption() for scene in scenes], device=self.device
            )
        return heads.loss(hidden, pooled, targets)

    def train_text(self) -> None:
        """Supervised caption reading for both text encoders (see reading.py); heads discarded."""
        cfg = self.config.text
        encoders = [self.pipe.text_encoder, self.pipe.text_encoder_2]
        heads = ReadingHeads(cfg.t5_d_model, cfg.clip_hidden).to(self.device)
        params = [p for m in [*encoders, heads] for p in m.parameters()]
        optimizer = torch.optim.AdamW(params, lr=cfg.reading_lr, weight_decay=0.0)
        payload = self._load("text")
        if payload is not None:
            for module, state in zip(encoders, payload["models"], strict=True):
                module.load_state_dict(state)
            if "heads" in payload:
                heads.load_state_dict(payload["heads"])
                optimizer.load_state_dict(payload["optimizer"])
        if self.states["text"].done:
            return

        def step(index: int, progress: float) -> float | None:
            rng = step_rng(self.config.seed, "text", index)
            scenes = [sample_train_scene(rng) for _ in range(cfg.reading_batch_size)]
            loss, _ = self._reading_batch(scenes, heads)
            return self._apply(
                loss, optimizer, params, cfg.reading_lr * _schedule(index, progress, 50)
            )

        def save() -> None:
            self._save(
                "text",
                {
                    "models": [m.state_dict() for m in encoders],
                    "heads": heads.state_dict(),
                    "optimizer": optimizer.state_dict(),
                },
            )

        for module in encoders:
            module.train()
        self._loop("text", step, save)
        for module in encoders:
            module.eval()

        @torch.no_grad()
        def held_out_accuracy() -> dict[str, float]:
            scenes = [case.scene for case in eval_cases(self.config.metric_images, seed=17)]
            return {
                f"{head}_accuracy": value
                for head, value in self._reading_batch(scenes, heads)[1].items()
            }

        self.states["text"].metrics = self._measure("text", held_out_accuracy)
        save()

    # -- part 4: transformer and text encoders -------------------------------------------------

    def _trainables(self) -> list[torch.nn.Module]:
        return [self.pipe.transformer, self.pipe.text_encoder, self.pipe.text_encoder_2]

    def encode_captions(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 sequence, CLIP pooled vector) through the pipeline's own prompt code."""
        pooled = self.pipe._get_clip_prompt_embeds(captions, device=self.device)
        sequence = self.pipe._get_t5_prompt_embeds(
            captions, max_sequence_length=self.config.text.t5_max_length, device=self.device
        )
        return sequence, pooled

    def train_transformer(self) -> None:
        cfg = self.config.transformer
        pipe = self.pipe
        modules = self._trainables()
        params = [p for m in modules for p in m.parameters()]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.99))
        ema = Ema(modules, cfg.ema_decay)
        payload = self._load("transformer")
        if payload is not None:
            for module, state in zip(modules, payload["models"], strict=True):
                module.load_state_dict(state)
            optimizer.load_state_dict(payload["optimizer"])
            ema.shadow = [t.to(self.device) for t in payload["ema"]]
        if self.states["transformer"].done:
            self._finished_ema = ema
            return
        # The auxiliary kind loss (kind_loss.py): a head with its own optimizer, not exported.
        kind_head: KindHead | None = None
        head_optimizer: torch.optim.Optimizer | None = None
        kind_accuracy: collections.deque[float] = collections.deque(maxlen=200)
        if cfg.kind_loss_weight:
            kind_head = KindHead(pipe.transformer).to(self.device)
            head_optimizer = torch.optim.AdamW(kind_head.parameters(), lr=cfg.lr, weight_decay=0.01)
            if payload is not None and "kind_head" in payload:
                kind_head.load_state_dict(payload["kind_head"])
                head_optimizer.load_state_dict(payload["kind_head_optimizer"])
        pipe.vae.requires_grad_(False)
        from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift

        sched = pipe.scheduler.config

        # Encoded pictures of the data pool, by pool index (see TransformerConfig.data_pool):
        # size, captions, latents, the loss weight of each token, and (with the kind loss)
        # each token's kind label.
        Pictures = tuple[
            tuple[int, int], list[str], torch.Tensor, torch.Tensor, torch.Tensor | None
        ]
        pool: dict[int, Pictures] = {}

        def pictures(index: int, finishing: bool) -> Pictures:
            # The finish phase draws fresh square pictures (its own part name keeps them apart
            # from the pool's); before it, the pool's pictures of all sizes.
            pooled = cfg.data_pool and not finishing
            data_index = index % cfg.data_pool if pooled else index
            if pooled and data_index in pool:
                return pool[data_index]
            rng = step_rng(
                self.config.seed, "transformer-finish" if finishing else "transformer", data_index
            )
            low_fraction = cfg.finish.low_fraction if finishing else cfg.low_fraction
            size = pick_size(rng, low_fraction, square_only=finishing)
            batch = training_batch(rng, size, cfg.batch_size, self.device)
            with torch.no_grad(), self.autocast():
                z = pipe.vae.encode(batch.images * 2 - 1).latent_dist.mode().float()
            weight = 1 + cfg.shape_loss_weight * shape_tokens(batch)
            labels = kind_labels(batch) if kind_head is not None else None
            item = (size, batch.captions, z, weight, labels)
            if pooled:
                pool[data_index] = item
            return item

        def step(index: int, progress: float) -> float | None:
            finishing = progress >= 1 - cfg.finish.share
            if finishing and pool:
                pool.clear()  # the pool's pictures are not drawn again
            size, captions, z, weight, labels = pictures(index, finishing)
            high_noise_fraction = (
                cfg.finish.high_noise_fraction if finishing else cfg.high_noise_fraction
            )
            generator = step_generator(self.config.seed, "transformer", index, self.device)
            count = len(captions)
            z = (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
            _, channels, lh, lw = z.shape
            x0 = FluxPipeline._pack_latents(z, count, channels, lh, lw)
            image_ids = FluxPipeline._prepare_latent_image_ids(
                count, lh // 2, lw // 2, self.device, x0.dtype
            )
            # Timesteps: logit-normal, shifted as the scheduler shifts this size at inference;
            # at 256-class sizes a share is drawn below 0.3 for MrFlow's one-step refine.
            mu = calculate_shift(
                x0.shape[1],
                sched.base_image_seq_len,
                sched.max_image_seq_len,
                sched.base_shift,
                sched.max_shift,
            )
            u = torch.sigmoid(torch.randn(count, generator=generator, device=self.device))
            sigma = math.exp(mu) / (math.exp(mu) + (1 / u - 1))
            if size[0] * size[1] >= 256 * 192:
                low = torch.rand(count, generator=generator, device=self.device) * 0.3
                pick = (
                    torch.rand(count, generator=generator, device=self.device) < cfg.refine_fraction
                )
                sigma = torch.where(pick, low, sigma)
            if high_noise_fraction:
                floor = cfg.high_noise_floor
                high = floor + (1 - floor) * torch.rand(
                    count, generator=generator, device=self.device
                )
                pick = (
                    torch.rand(count, generator=generator, device=self.device) < high_noise_fraction
                )
                sigma = torch.where(pick, high, sigma)
            noise = torch.randn(x0.shape, generator=generator, device=self.device)
            s = sigma.view(count, 1, 1)
            xt = (1 - s) * x0 + s * noise
            guidance = torch.empty(count, device=self.device).uniform_(
                *cfg.guidance_range, generator=generator
            )
            if cfg.caption_dropout:  # drawn last: the draws above stay those of a run without it
                drop = torch.rand(count, generator=generator, device=self.device)
                captions = [
                    "" if d < cfg.caption_dropout else c
                    for c, d in zip(captions, drop.tolist(), strict=True)
                ]
            with self.autocast():
                sequence, pooled = self.encode_captions(captions)
                text_ids = torch.zeros(sequence.shape[1], 3, device=self.device)
                pred = pipe.transformer(
                    hidden_states=xt,
                    timestep=sigma,
                    guidance=guidance,
                    pooled_projections=pooled,
                    encoder_hidden_states=sequence,
                    txt_ids=text_ids,
                    img_ids=image_ids,
                    return_dict=False,
                )[0].float()
            # Per-token squared error, shapes weighted up, normalised to the weights' mean.
            error = (pred - (noise - x0)).pow(2).mean(dim=2)
            loss = (error * weight).sum() / weight.sum()
            if kind_head is not None and head_optimizer is not None and labels is not None:
                kind_loss, accuracy = kind_head.loss(labels)
                loss = loss + cfg.kind_loss_weight * kind_loss
                kind_accuracy.append(accuracy)
                head_optimizer.zero_grad(set_to_none=True)
            lr = cfg.lr * _schedule(index, progress, cfg.warmup)
            value = self._apply(loss, optimizer, params, lr)
            if value is not None:
                ema.update(modules, index)
                if head_optimizer is not None:
                    for group in head_optimizer.param_groups:
                        group["lr"] = lr
                    head_optimizer.step()
            return value

        def save() -> None:
            payload = {
                "models": [m.state_dict() for m in modules],
                "optimizer": optimizer.state_dict(),
                "ema": ema.shadow,
            }
            if kind_head is not None and head_optimizer is not None:
                payload["kind_head"] = kind_head.state_dict()
                payload["kind_head_optimizer"] = head_optimizer.state_dict()
            self._save("transformer", payload)

        for module in modules:
            module.train()
        try:
            self._loop("transformer", step, save)
        finally:
            if kind_head is not None:
                kind_head.remove_hook()
        if kind_accuracy:  # the head's accuracy on shape tokens, last 200 steps
            self.states["transformer"].metrics["kind_head_shape_token_accuracy"] = round(
                sum(kind_accuracy) / len(kind_accuracy), 4
            )
        for module in modules:
            module.eval()
        self._finished_ema = ema

    # -- export --------------------------------------------------------------------------------

    def export(self) -> Path:
        """Write the finished model folder: EMA weights, fp16 safetensors, upscaler beside."""
        from safetensors.torch import save_file

        model_dir = self.out / "model"
        pipe = copy.deepcopy(self.pipe).to("cpu")
        ema = self._finished_ema
        if ema is None:
            raise RuntimeError(
                "export() needs a trained transformer; run train_transformer() first"
            )
        ema.copy_to([pipe.transformer, pipe.text_encoder, pipe.text_encoder_2])
        pipe.to(dtype=torch.float16)
        pipe.save_pretrained(model_dir, safe_serialization=True)
        upscaler_path = model_dir / UPSCALER_FILE
        upscaler_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to("cpu", torch.float16).contiguous()
            for k, v in self.upscaler.state_dict().items()
        }
        save_file(state, str(upscaler_path))
        info = {
            "name": "mrflow-builtin-shapes",
            "description": "MrFlow's built-in model of coloured shapes; see docs/builtin-model.md",
            "config": self.config.name,
            "seed": self.config.seed,
            "upscaler": UPSCALER_FILE,
            "t5_max_sequence_length": self.config.text.t5_max_length,
            "working_size": [256, 256],
            "lowres_size": [128, 128],
            "example_prompt": "a red circle on the left and a blue square at the top, grey background",
        }
        if self.true_cfg_scale() > 1:
            info["true_cfg_scale"] = self.true_cfg_scale()
        if self.config.transformer.refine_sigma is not None:
            info["refine_sigma"] = self.config.transformer.refine_sigma
        (model_dir / CARD_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return model_dir

    def _load_exported(self, model_dir: Path) -> Any:
        """The exported folder as diffusers loads it, on the training device."""
        from diffusers import FluxPipeline

        dtype = torch.bfloat16 if self.bf16 else torch.float32
        pipe = FluxPipeline.from_pretrained(model_dir, torch_dtype=dtype).to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @torch.no_grad()
    def true_cfg_scale(self) -> float:
        """The model's true CFG scale: the config's with caption dropout, else 1 (none)."""
        cfg = self.config.transformer
        return cfg.true_cfg_scale if cfg.caption_dropout > 0 else 1.0

    def _quick_generation_check(self, pipe: Any, count: int) -> dict[str, Any]:
        """Native sampling of held-out prompts with the exported folder, through diffusers
        (with true CFG and an empty negative prompt when the card asks for it)."""
        cases = eval_cases(count, seed=13)
        scale = self.true_cfg_scale()
        passes = 0
        shown: list[Any] = []
        for chunk_start in range(0, count, 16):
            chunk = cases[chunk_start : chunk_start + 16]
            generator = [torch.Generator(self.device).manual_seed(c.seed) for c in chunk]
            images = pipe(
                [c.caption for c in chunk],
                negative_prompt=[""] * len(chunk) if scale > 1 else None,
                true_cfg_scale=scale,
                height=256,
                width=256,
                num_inference_steps=28,
                guidance_scale=3.5,
                max_sequence_length=self.config.text.t5_max_length,
                generator=generator,
            ).images
            passes += sum(
                check_image(im, c.scene).passed for im, c in zip(images, chunk, strict=True)
            )
            shown += images[: max(0, 8 - len(shown))]
        # Ground truth above, generations below: a first look before `mrflow eval`.
        from PIL import Image

        grid = Image.new("RGB", (256 * len(shown), 512))
        for column, (image, case) in enumerate(zip(shown, cases, strict=False)):
            grid.paste(render_image(case.scene, case.placements()), (256 * column, 0))
            grid.paste(image, (256 * column, 256))
        grid.save(self.out / "quick_check.png")
        return {"native_28_steps_all_pass": passes / count, "prompts": count, "true_cfg": scale}

    # -- the whole run -------------------------------------------------------------------------

    def run(self, quick_check: int = 32) -> dict[str, Any]:
        started = time.monotonic()
        self.train_vae()
        self.train_upscaler()
        self.train_text()
        self.train_transformer()
        model_dir = self.export()
        from mrflow_daemon.builtin.sensitivity import caption_sensitivity

        # Loaded once for both measures, inside them, so a failed load is recorded, not fatal.
        exported = functools.cache(lambda: self._load_exported(model_dir))
        metrics = self.states["transformer"].metrics
        metrics["caption_sensitivity"] = self._measure(
            "caption sensitivity", lambda: caption_sensitivity(exported())
        )
        if quick_check:
            metrics.update(
                self._measure(
                    "transformer", lambda: self._quick_generation_check(exported(), quick_check)
                )
            )
        size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
        summary = {
            "config": asdict(self.config),
            "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.cuda else "cpu",
            "time_budget": self.time_budget,
            "wall_seconds": round(time.monotonic() - started, 1),
            "parameters": {
                "vae": count_parameters(self.pipe.vae),
                "transformer": count_parameters(self.pipe.transformer),
                "clip": count_parameters(self.pipe.text_encoder),
                "t5": count_parameters(self.pipe.text_encoder_2),
                "upscaler": count_parameters(self.upscaler),
            },
            "model_dir": str(model_dir),
            "model_bytes": size,
            "parts": {
                part: {
                    "steps": state.step,
                    "seconds": round(state.seconds, 1),
                    "steps_per_second": round(state.step / state.seconds, 3)
                    if state.seconds
                    else None,
                    "first_loss": state.losses[0] if state.losses else None,
                    "final_loss": state.losses[-1] if state.losses else None,
                    "losses": state.losses,
                    "metrics": state.metrics,
                    "skipped_updates": state.skipped,
                    "error": state.error,
                }
                for part, state in self.states.items()
            },
        }
        (self.out / "summary.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
        return summary


def _schedule(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% over the part's steps or time."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
