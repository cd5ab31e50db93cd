"""The auxiliary kind loss: a linear head reads, from the transformer's image tokens at
mid-depth, which kind of shape covers each token (background, circle, square, triangle).

The flow loss alone teaches kind slowly: a circle and a square of one size differ only at their
corners, sub-token detail worth little squared error, and the shipped weights read the kind word
at a fifth of a perfect model's sensitivity while reading colour and position almost fully. The
head's cross-entropy rewards the transformer for carrying the caption's kind word to the tokens
where the shape goes, which is what it was missing; the layers after the head then turn that
into corners. The head is thrown away at export, like the reading heads (reading.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mrflow_daemon.builtin.world import KINDS


class KindHead(torch.nn.Module):
    """A linear map from one transformer block's image tokens to kind logits, fed by a hook."""

    def __init__(self, transformer: Any) -> None:
        super().__init__()
        config = transformer.config
        width = config.num_attention_heads * config.attention_head_dim
        self.linear = torch.nn.Linear(width, 1 + len(KINDS))
        blocks = transformer.single_transformer_blocks or transformer.transformer_blocks
        self.block_index = max(len(blocks) // 2 - 1, 0)
        self._hidden: torch.Tensor | None = None
        self._hook = blocks[self.block_index].register_forward_hook(self._capture)

    def _capture(self, _module: Any, _inputs: Any, output: Any) -> None:
        self._hidden = output[1]  # FLUX blocks return (text stream, image stream)

    def remove_hook(self) -> None:
        self._hook.remove()

    def loss(self, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Cross-entropy against per-token labels [B, tokens] of the last forward pass, and
        the accuracy on tokens that show a shape."""
        if self._hidden is None:
            raise RuntimeError("KindHead.loss needs a transformer forward pass first")
        hidden, self._hidden = self._hidden, None
        logits = self.linear(hidden.float())
        labels = labels.long()
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        with torch.no_grad():
            shape = labels > 0
            hits = logits.argmax(-1)[shape] == labels[shape]
            accuracy = float(hits.float().mean()) if bool(shape.any()) else 0.0
        return loss, accuracy
