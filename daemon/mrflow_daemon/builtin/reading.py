"""Teach the built-in model's text encoders to read the caption grammar before the transformer does.

FLUX.1's text encoders arrive pretrained; ours start from random weights. Trained only through
the transformer's loss, the shipped T5 (2 h 30 min in) knew its own phrase's colour, kind and
position from a single token only 60-72% of the time (a linear probe per token). This part gives
both encoders two supervised reading tasks first, with small heads that are thrown away after:

- every T5 token of a shape phrase predicts that phrase's colour, kind and position, so "left"
  in "a red circle on the left" also carries "red circle": the binding the transformer needs,
  readable from any one token;
- the pooled CLIP vector predicts the whole scene: at each of the five positions, which colour
  and kind is there (or nothing), and the background.

    heads = ReadingHeads(t5_dim=128, clip_dim=64)
    targets = reading_targets(t5_tokenizer, scenes, max_length=32)
    loss, accuracy = heads.loss(t5_hidden, clip_pooled, targets)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mrflow_daemon.builtin.world import (
    BACKGROUND_COLOURS,
    KINDS,
    POSITIONS,
    SHAPE_COLOURS,
    Scene,
)

IGNORE = -100  # cross_entropy's ignore_index: tokens outside every shape phrase
_COLOURS = list(SHAPE_COLOURS)
_BACKGROUNDS = list(BACKGROUND_COLOURS)
# Token head outputs: colour, kind, position logits side by side.
_TOKEN_SPLITS = (len(_COLOURS), len(KINDS), len(POSITIONS))
# Scene head outputs, per position: colour or nothing, kind or nothing; then the background.
_SLOT_SPLITS = (1 + len(_COLOURS), 1 + len(KINDS))


@dataclass
class ReadingTargets:
    input_ids: torch.Tensor  # [B, L], exactly as FluxPipeline tokenizes for T5
    tokens: torch.Tensor  # [B, L, 3]: colour, kind, position index of the token's phrase
    scene: torch.Tensor  # [B, 2 * positions + 1]: per position colour+1 and kind+1 (0: none)

    def to(self, device: torch.device | str) -> ReadingTargets:
        return ReadingTargets(
            self.input_ids.to(device), self.tokens.to(device), self.scene.to(device)
        )


def _phrase_spans(caption: str, count: int) -> list[tuple[int, int]]:
    """Character spans of the caption's shape phrases, in order."""
    spans, start = [], 0
    for phrase in caption.rpartition(", ")[0].split(" and ")[:count]:
        begin = caption.index(phrase, start)
        spans.append((begin, begin + len(phrase)))
        start = begin + len(phrase)
    return spans


def reading_targets(tokenizer: Any, scenes: Sequence[Scene], max_length: int) -> ReadingTargets:
    captions = [scene.caption() for scene in scenes]
    encoded = tokenizer(
        captions,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    tokens = torch.full((*encoded.input_ids.shape, 3), IGNORE, dtype=torch.long)
    scene_targets = torch.zeros(len(scenes), 2 * len(POSITIONS) + 1, dtype=torch.long)
    for row, (scene, caption) in enumerate(zip(scenes, captions, strict=True)):
        spans = _phrase_spans(caption, len(scene.shapes))
        labels = [
            torch.tensor(
                [_COLOURS.index(s.colour), KINDS.index(s.kind), POSITIONS.index(s.position)]
            )
            for s in scene.shapes
        ]
        for column, (begin, end) in enumerate(encoded.offset_mapping[row].tolist()):
            for label, (first, last) in zip(labels, spans, strict=True):
                if end > begin and first <= begin and end <= last:
                    tokens[row, column] = label
        for shape in scene.shapes:
            slot = POSITIONS.index(shape.position)
            scene_targets[row, 2 * slot] = 1 + _COLOURS.index(shape.colour)
            scene_targets[row, 2 * slot + 1] = 1 + KINDS.index(shape.kind)
        scene_targets[row, -1] = _BACKGROUNDS.index(scene.background)
    return ReadingTargets(encoded.input_ids, tokens, scene_targets)


class ReadingHeads(torch.nn.Module):
    """Linear read-outs of the two encoders (linear, so the encoders must do the binding)."""

    def __init__(self, t5_dim: int, clip_dim: int) -> None:
        super().__init__()
        self.token = torch.nn.Linear(t5_dim, sum(_TOKEN_SPLITS))
        scene_outputs = len(POSITIONS) * sum(_SLOT_SPLITS) + len(_BACKGROUNDS)
        self.scene = torch.nn.Linear(clip_dim, scene_outputs)

    def loss(
        self, t5_hidden: torch.Tensor, clip_pooled: torch.Tensor, targets: ReadingTargets
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy over every prediction, and the accuracy of each head."""
        predictions: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        token_logits = self.token(t5_hidden.float()).split(_TOKEN_SPLITS, dim=-1)
        for index, logits in enumerate(token_logits):
            predictions.append(
                ("token", logits.flatten(0, 1), targets.tokens[..., index].flatten())
            )
        slots, background = self.scene(clip_pooled.float()).split(
            [len(POSITIONS) * sum(_SLOT_SPLITS), len(_BACKGROUNDS)], dim=-1
        )
        for slot, chunk in enumerate(slots.split(sum(_SLOT_SPLITS), dim=-1)):
            colour, kind = chunk.split(_SLOT_SPLITS, dim=-1)
            predictions.append(("scene", colour, targets.scene[:, 2 * slot]))
            predictions.append(("scene", kind, targets.scene[:, 2 * slot + 1]))
        predictions.append(("scene", background, targets.scene[:, -1]))

        losses = [F.cross_entropy(lg, tg, ignore_index=IGNORE) for _, lg, tg in predictions]
        correct: dict[str, list[torch.Tensor]] = {"token": [], "scene": []}
        for head, logits, target in predictions:
            kept = target != IGNORE
            correct[head].append((logits.argmax(-1) == target)[kept].float())
        accuracy = {head: float(torch.cat(values).mean()) for head, values in correct.items()}
        return torch.stack(losses).mean(), accuracy
