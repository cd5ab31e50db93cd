"""The text-reading part: its targets, and that its heads can teach a text encoder the grammar."""

from __future__ import annotations

import random

import torch
from mrflow_daemon.builtin.models import _local_attention_prior, make_t5_tokenizer
from mrflow_daemon.builtin.reading import IGNORE, ReadingHeads, reading_targets
from mrflow_daemon.builtin.world import (
    BACKGROUND_COLOURS,
    KINDS,
    POSITIONS,
    SHAPE_COLOURS,
    parse_caption,
    sample_train_scene,
)

CAPTION = "a red circle on the left and a blue square at the top, grey background"


def _label(colour: str, kind: str, position: str) -> list[int]:
    return [list(SHAPE_COLOURS).index(colour), KINDS.index(kind), POSITIONS.index(position)]


def test_every_token_of_a_phrase_is_labelled_with_that_phrase() -> None:
    tokenizer = make_t5_tokenizer(32)
    targets = reading_targets(tokenizer, [parse_caption(CAPTION)], 32)
    words = tokenizer.convert_ids_to_tokens(targets.input_ids[0])
    labels = targets.tokens[0].tolist()
    first, second = words.index("▁and"), words.index(",")
    assert all(label == _label("red", "circle", "left") for label in labels[:first])
    assert labels[first] == [IGNORE] * 3  # "and" belongs to neither phrase
    assert all(label == _label("blue", "square", "top") for label in labels[first + 1 : second])
    assert all(label == [IGNORE] * 3 for label in labels[second:])  # background, </s>, padding


def test_scene_targets_name_each_position_or_nothing() -> None:
    targets = reading_targets(make_t5_tokenizer(32), [parse_caption(CAPTION)], 32)
    scene = targets.scene[0].tolist()
    left, top = POSITIONS.index("left"), POSITIONS.index("top")
    assert scene[2 * left : 2 * left + 2] == [1 + list(SHAPE_COLOURS).index("red"), 1]
    assert scene[2 * top : 2 * top + 2] == [1 + list(SHAPE_COLOURS).index("blue"), 2]
    empty = [p for p in range(len(POSITIONS)) if p not in (left, top)]
    assert all(scene[2 * p] == 0 and scene[2 * p + 1] == 0 for p in empty)
    assert scene[-1] == list(BACKGROUND_COLOURS).index("grey")


def test_the_heads_teach_an_encoder_which_words_belong_together() -> None:
    """A small T5 trained through the heads learns the binding; a wrong target would not train."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tokenizer = make_t5_tokenizer(32)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    )
    _local_attention_prior(t5)  # as the built-in model's T5 starts
    pooled = torch.nn.Linear(32, 32)  # stands in for CLIP: pools the T5 sequence
    heads = ReadingHeads(32, 32)
    params = [*t5.parameters(), *pooled.parameters(), *heads.parameters()]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    rng = random.Random(0)

    def run(scenes: list, train: bool) -> dict[str, float]:
        targets = reading_targets(tokenizer, scenes, 32)
        hidden = t5(targets.input_ids).last_hidden_state
        loss, accuracy = heads.loss(hidden, pooled(hidden.mean(dim=1)), targets)
        if train:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return accuracy

    with torch.no_grad():
        before = run([sample_train_scene(rng) for _ in range(64)], train=False)
    for _ in range(150):
        run([sample_train_scene(rng) for _ in range(32)], train=True)
    with torch.no_grad():
        after = run([sample_train_scene(rng) for _ in range(64)], train=False)
    assert before["token"] < 0.5
    assert after["token"] > 0.9
    assert after["scene"] > before["scene"]
