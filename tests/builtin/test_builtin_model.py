"""The committed built-in model: it loads from the repo and draws what the caption says."""

from __future__ import annotations

import pytest
from mrflow_daemon.builtin import trained_upscaler, trained_weights
from mrflow_daemon.builtin.checker import check_image
from mrflow_daemon.builtin.world import parse_caption

# A fixed two-shape prompt and seed per preset whose picture passes every check (on 1 and 2 CPU
# threads alike; `paper`'s was picked at sigma 0.12 and passes at the card's 0.4 too). They were chosen: the shipped model passes on most prompts natively but not on
# all (docs/quality.md), so this test proves the committed weights load through the engine (with
# the true CFG their card asks for) and draw what a caption says, not that they always do.
CASES = [
    ("paper", "a yellow circle at the bottom and a white circle on the right, brown background", 0),
    ("native", "a green square at the bottom and a white circle on the left, grey background", 0),
]

pytestmark = pytest.mark.skipif(
    trained_weights() is None,
    reason="the trained built-in weights (daemon/mrflow_daemon/builtin/weights) are not in this "
    "checkout yet; `mrflow train-builtin` writes them to OUT/model",
)


@pytest.mark.parametrize(("preset", "prompt", "seed"), CASES)
def test_builtin_model_draws_the_caption(preset: str, prompt: str, seed: int) -> None:
    from mrflow_daemon.engine.pipeline import MrFlowEngine
    from mrflow_daemon.engine.request import GenerationRequest

    weights = trained_weights()
    assert weights is not None
    engine = MrFlowEngine.from_pretrained(weights, device="cpu", upscaler=trained_upscaler(weights))
    result = engine.generate(GenerationRequest(prompt, 256, 256, preset=preset, seed=seed))
    engine.unload()
    assert result.image.size == (256, 256)
    check = check_image(result.image, parse_caption(prompt))
    assert check.passed, check.checks()


def test_builtin_weights_fit_the_size_budget() -> None:
    weights = trained_weights()
    assert weights is not None
    total = sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())
    assert total <= 30_000_000


def test_the_shipped_card_names_the_working_size_and_a_grammar_prompt() -> None:
    from mrflow_daemon.builtin import model_card, working_size

    weights = trained_weights()
    assert weights is not None
    card = model_card(weights)
    assert working_size(card) == (256, 256)
    assert card is not None and parse_caption(card["example_prompt"])
    assert working_size({"working_size": [256]}) is None and working_size(None) is None


def test_the_shipped_card_asks_for_its_recipes_sampling_settings() -> None:
    """The card's true CFG scale and refine sigma are the ones its recipe writes (and the ones
    docs/quality.md measured): a retrained model ships with the same."""
    from mrflow_daemon.builtin import model_card, refine_sigma, true_cfg_scale
    from mrflow_daemon.builtin.config import get_config

    card = model_card(trained_weights() or pytest.fail("no weights"))
    assert card is not None
    recipe = get_config(card["config"]).transformer
    assert true_cfg_scale(card) == recipe.true_cfg_scale == 2.0
    assert refine_sigma(card) == recipe.refine_sigma == 0.4
