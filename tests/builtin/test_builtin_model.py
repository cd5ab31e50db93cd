"""The committed built-in model: it loads from the repo and draws what the caption says."""

from __future__ import annotations

import pytest
from mrflow_daemon.builtin import trained_upscaler, trained_weights
from mrflow_daemon.builtin.checker import check_image
from mrflow_daemon.builtin.world import parse_caption

PROMPT = "a red circle on the left and a blue square at the top, grey background"
SEED = 0

pytestmark = pytest.mark.skipif(
    trained_weights() is None,
    reason="the trained built-in weights (daemon/mrflow_daemon/builtin/weights) are not in this "
    "checkout yet; `mrflow train-builtin` writes them to OUT/model",
)


@pytest.mark.parametrize("preset", ["paper", pytest.param("native", marks=pytest.mark.slow)])
def test_builtin_model_draws_the_caption(preset: str) -> None:
    from mrflow_daemon.engine.pipeline import MrFlowEngine
    from mrflow_daemon.engine.request import GenerationRequest

    weights = trained_weights()
    assert weights is not None
    engine = MrFlowEngine.from_pretrained(weights, device="cpu", upscaler=trained_upscaler(weights))
    result = engine.generate(GenerationRequest(PROMPT, 256, 256, preset=preset, seed=SEED))
    engine.unload()
    assert result.image.size == (256, 256)
    check = check_image(result.image, parse_caption(PROMPT))
    assert check.passed, check.checks()


def test_builtin_weights_fit_the_size_budget() -> None:
    weights = trained_weights()
    assert weights is not None
    total = sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())
    assert total <= 30_000_000
