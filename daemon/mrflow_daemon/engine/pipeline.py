"""`MrFlowEngine`: load a model once, then plan and run generations on it.

    engine = MrFlowEngine.from_pretrained("/models/FLUX.1-dev")
    result = engine.generate(GenerationRequest("a lighthouse at dusk", 1024, 1024))

Loading picks the device and dtype (CUDA bf16, Apple MPS fp16 or bf16, CPU
fp32; both overridable), detects the family from model_index.json, wraps the
pipeline in its family adapter and loads the upscaler. Each job attaches the
request's LoRAs and removes them afterwards, so every job starts clean.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import re
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mrflow_daemon.engine.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    OutOfMemoryError,
    UnsupportedModelError,
)
from mrflow_daemon.engine.events import CancelToken, Listener, ignore
from mrflow_daemon.engine.families import (
    family_info,
    family_of_pipeline,
    make_adapter,
    pipeline_class,
)
from mrflow_daemon.engine.families.base import FamilyAdapter
from mrflow_daemon.engine.plan import SEED_LIMIT, FamilyInfo, Plan, resolve_plan
from mrflow_daemon.engine.request import GenerationRequest, LoraSpec
from mrflow_daemon.engine.result import GenerationResult, LowResCandidate
from mrflow_daemon.engine.sampler import StagedSampler, UpscalerLike

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device (checked), else CUDA, else Apple MPS, else the CPU."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise InvalidRequestError(
                f"unknown device {requested!r}; use cuda, cuda:N, mps or cpu", field="device"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidRequestError("CUDA is not available on this machine", field="device")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise InvalidRequestError(
                f"there is no {requested}: this machine has cuda:0 to cuda:{count - 1}",
                field="device",
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise InvalidRequestError("Apple MPS is not available on this machine", field="device")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    if requested:
        try:
            return DTYPES[requested.lower()]
        except KeyError:
            allowed = ", ".join(DTYPES)
            raise InvalidRequestError(
                f"unknown dtype {requested!r}; allowed: {allowed}", field="dtype"
            ) from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        # bf16 needs macOS 14+ on MPS; fp16 works everywhere but can overflow in FLUX's VAE.
        return torch.bfloat16 if _mps_supports_bf16() else torch.float16
    return torch.float32


def _mps_supports_bf16() -> bool:
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
    except (RuntimeError, TypeError):
        return False
    return True


def resolve_model_folder(model: str | Path) -> Path:
    """A local folder as is; an "owner/name" Hugging Face id via the hub cache (or download)."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    text = str(model)
    if HF_ID.match(text) and not text.startswith((".", "/", "~")):
        try:
            from diffusers import DiffusionPipeline

            # Fetches only the files of the diffusers components model_index.json names
            # (hub repos often also hold multi-GB single-file checkpoints).
            return Path(DiffusionPipeline.download(text))
        except Exception as exc:  # offline, unknown repo, gated model, ...
            raise ModelNotFoundError(
                f"could not get {text!r} from the Hugging Face hub: {exc}", field="model"
            ) from exc
    raise ModelNotFoundError(f"model folder {path} does not exist", field="model")


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class MrFlowEngine:
    """One loaded model (and upscaler) running MrFlow staged generation."""

    def __init__(
        self,
        adapter: FamilyAdapter,
        upscaler: Any,
        *,
        model_name: str,
        device: torch.device,
        dtype: torch.dtype,
        max_side: int = 2048,
        default_upscaler: bool = False,
    ) -> None:
        self._adapter: FamilyAdapter | None = adapter
        self.upscaler = upscaler
        self._default_upscaler = default_upscaler
        # The default was loaded for scale 2 (the paper's); it may be a x4 network when no x2
        # is installed, which then serves scale 4 as well: keyed under both, loaded once.
        self._upscalers: dict[int, UpscalerLike] = (
            {2: upscaler, int(upscaler.scale): upscaler} if default_upscaler else {}
        )
        self.model_name = model_name
        self.device = device
        self.dtype = dtype
        self.max_side = max_side

    # Loading ------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        offload: bool = False,
        upscaler: Any = None,
        max_side: int = 2048,
    ) -> MrFlowEngine:
        """Load a diffusers folder or Hugging Face id of a supported family.

        `upscaler`: an object with `upscale_tensor(x, (w, h))`, or a spec for
        `mrflow_daemon.upscale.load_upscaler` (a weights file or a known name),
        or None for the default: the model folder's own `upscaler/` when it ships one (the
        built-in model does), else `upscale.resolve_upscaler`'s (RealESRGAN_x2plus if installed,
        else x4plus; on a CPU the compact realesr-animevideov3).
        """
        folder = resolve_model_folder(model)
        info = family_info(folder)
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(torch_device, dtype)
        try:
            pipe = pipeline_class(info).from_pretrained(folder, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise UnsupportedModelError(f"could not load {folder}: {exc}", field="model") from exc
        pipe.set_progress_bar_config(disable=True)
        if offload and torch_device.type != "cpu":
            pipe.enable_model_cpu_offload(device=torch_device)
        else:
            pipe.to(torch_device)
        adapter = make_adapter(pipe, info)
        adapter.fit_preview()
        if upscaler is None:
            # A model may ship the upscaler it was trained with (the built-in model does).
            from mrflow_daemon.builtin import trained_upscaler

            upscaler = trained_upscaler(folder)
        default_upscaler = upscaler is None
        if upscaler is None or isinstance(upscaler, (str, Path)):
            from mrflow_daemon.upscale import load_upscaler

            upscaler = load_upscaler(upscaler, device=str(torch_device), dtype=torch_dtype, scale=2)
        name = folder.name if Path(model).expanduser().exists() else str(model)
        log.info("loaded %s (%s) on %s as %s", name, info.name, torch_device, torch_dtype)
        return cls(
            adapter,
            upscaler,
            model_name=name,
            device=torch_device,
            dtype=torch_dtype,
            max_side=max_side,
            default_upscaler=default_upscaler,
        )

    @classmethod
    def from_pipeline(
        cls,
        pipe: Any,
        upscaler: Any,
        *,
        model_name: str | None = None,
        max_side: int = 2048,
    ) -> MrFlowEngine:
        """Wrap a pipeline built in memory (already on its device), e.g. a random-weight
        model for benchmarks. `upscaler`: an object with `upscale_tensor`."""
        info = family_of_pipeline(pipe)
        pipe.set_progress_bar_config(disable=True)
        adapter = make_adapter(pipe, info)
        adapter.fit_preview()
        return cls(
            adapter,
            upscaler,
            model_name=model_name or type(pipe).__name__,
            device=adapter.device,
            dtype=adapter.dtype,
            max_side=max_side,
        )

    @property
    def adapter(self) -> FamilyAdapter:
        if self._adapter is None:
            raise RuntimeError("this engine was unloaded; load a new one")
        return self._adapter

    @property
    def info(self) -> FamilyInfo:
        return self.adapter.info

    @property
    def family(self) -> str:
        return self.info.name

    @property
    def size_multiple(self) -> int:
        return self.info.size_multiple

    def unload(self) -> None:
        """Drop the pipeline and free device memory; the engine is unusable afterwards."""
        self._adapter = None
        self.upscaler = None
        self._upscalers.clear()
        _free_memory()

    # Planning -----------------------------------------------------------------------
    def plan(self, request: GenerationRequest) -> Plan:
        return resolve_plan(request, self.info, self.max_side)

    def _upscaler_for(self, plan: Plan) -> UpscalerLike | None:
        """The upscaler for this plan's scale.

        The default (Real-ESRGAN) upscaler is reloaded at the plan's factor when
        it differs (x4 for scale 4), once. An upscaler the caller chose is used
        for every scale: its exact resample reaches any target size.
        """
        if not plan.staged:
            return None
        if plan.scale not in self._upscalers:
            if not self._default_upscaler:
                return self.upscaler  # type: ignore[no-any-return]
            from mrflow_daemon.upscale import load_upscaler

            self._upscalers[plan.scale] = load_upscaler(
                None, device=str(self.device), dtype=self.dtype, scale=plan.scale
            )
        return self._upscalers[plan.scale]

    # Running ------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        listener: Listener = ignore,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        plan = self.plan(request)
        with self._job(request):
            sampler = StagedSampler(self.adapter, self._upscaler_for(plan), listener, cancel)
            if plan.staged:
                return sampler.run_staged(request, plan)
            return sampler.run_native(request, plan)

    def explore(
        self,
        request: GenerationRequest,
        count: int,
        listener: Listener = ignore,
        cancel: CancelToken | None = None,
    ) -> list[LowResCandidate]:
        """Stage 1 alone for `count` candidates with seeds seed, seed + 1, ... (cheap)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
            raise InvalidRequestError(
                f"count must be an integer from 1 to 64, got {count!r}", field="count"
            )
        plan = self.plan(request)
        if not plan.staged:
            raise InvalidRequestError("explore needs a staged preset, not 'native'", field="preset")
        with self._job(request):
            sampler = StagedSampler(self.adapter, None, listener, cancel)
            prompts = sampler.encode_prompts(request, plan)
            candidates = []
            for offset in range(count):
                seed = (plan.seed + offset) % SEED_LIMIT
                seed_plan = self.plan(dataclasses.replace(request, seed=seed))
                candidates.append(sampler.explore_one(request, seed_plan, prompts))
            return candidates

    def refine(
        self,
        request: GenerationRequest,
        candidate: LowResCandidate,
        listener: Listener = ignore,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        """Stages 2-6 from a candidate of `explore` (same sizes; refine settings may differ)."""
        plan = self.plan(dataclasses.replace(request, seed=candidate.seed))
        low = (candidate.plan.lowres_width, candidate.plan.lowres_height)
        if (plan.lowres_width, plan.lowres_height) != low or not plan.staged:
            raise InvalidRequestError(
                f"the candidate was made at {low[0]}x{low[1]}; this request plans "
                f"{plan.lowres_width}x{plan.lowres_height} (keep width, height and scale)",
                field="candidate",
            )
        with self._job(request):
            sampler = StagedSampler(self.adapter, self._upscaler_for(plan), listener, cancel)
            start = time.perf_counter()
            prompts = sampler.encode_prompts(request, plan)
            latents = candidate.latents.to(self.adapter.device)
            return sampler.run_from_lowres(request, plan, prompts, latents, start)

    # One job's setup and cleanup ----------------------------------------------------------
    @contextmanager
    def _job(self, request: GenerationRequest) -> Iterator[None]:
        names = self._attach_loras(request.loras)
        try:
            yield
        except Exception as exc:
            if _is_oom(exc):
                # The traceback's frames hold the failed step's activations: drop their locals
                # first, or the cache cannot go back to the driver (for other programs).
                traceback.clear_frames(exc.__traceback__)
                _free_memory()
                raise OutOfMemoryError(
                    f"the {self.device.type} device ran out of memory: try a smaller size, "
                    "scale 4, or load the model with --offload",
                ) from exc
            raise
        finally:
            self._detach_loras(names)

    def _attach_loras(self, loras: list[LoraSpec]) -> list[str]:
        if not loras:
            return []
        pipe = self.adapter.pipe
        names: list[str] = []
        try:
            for index, lora in enumerate(loras):
                path = Path(lora.path).expanduser()
                if not path.exists():
                    raise InvalidRequestError(f"LoRA file {path} does not exist", field="loras")
                name = f"mrflow_lora_{index}"
                pipe.load_lora_weights(str(path), adapter_name=name)
                names.append(name)
            pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
        except InvalidRequestError:
            self._detach_loras(names)
            raise
        except Exception as exc:
            self._detach_loras(names)
            if _is_oom(exc):  # not the file's fault: the caller frees memory and says so
                raise
            raise InvalidRequestError(f"could not load LoRA: {exc}", field="loras") from exc
        return names

    def _detach_loras(self, names: list[str]) -> None:
        if names:
            self.adapter.pipe.delete_adapters(names)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
