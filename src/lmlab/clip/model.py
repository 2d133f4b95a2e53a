"""CLIP's two towers, their projections and the learned temperature (Radford et al., 2021).

Shapes: B images (and their B captions), C x S x S pixels, T characters, W tower width, E the
shared embedding width.

    image (B, C, S, S) -> image tower -> (B, W_img) -> image_proj -> (B, E) -> L2-normalise
    ids (B, T)         -> text tower  -> (B, W_txt) at EOS -> text_proj -> (B, E) -> normalise
    logits = exp(logit_scale) * image_emb @ text_emb^T                         (B, B)

The image tower is the vision lab's CNN without its head, or a small ViT; the text tower is a
causal character transformer. Both transformers use ``lmlab.scratch.attention.Attention`` (the
text tower causal, as CLIP's, the ViT bidirectional). ``logit_scale`` starts at log(1/0.07)
and is capped at log(100) as in CLIP.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.clip.text import VOCAB_SIZE
from lmlab.scratch.attention import Attention

MAX_SCALE = 100.0  # CLIP clips its logit scale at 100 (a temperature of 0.01)
INIT_TEMPERATURE = 0.07


@dataclass
class ClipShape:
    """Everything that sizes a CLIP (saved as final/clip.json, read back by ``build_clip``)."""

    image_encoder: str = "cnn"
    image_size: int = 32
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    patch: int = 4
    vit_dim: int = 64
    vit_depth: int = 2
    text_dim: int = 64
    text_depth: int = 2
    heads: int = 4
    text_len: int = 64
    embed_dim: int = 64


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x) (GELU, 4x width)."""

    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, causal=causal, bias=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TextTower(nn.Module):
    """Characters -> causal transformer (RoPE positions) -> LayerNorm -> the EOS feature."""

    def __init__(self, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, causal=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.width = dim

    def forward(self, ids: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)  # (B, T, W); padding after EOS is never seen by EOS (causal)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[torch.arange(len(ids), device=ids.device), eos]  # (B, W)


class ViTTower(nn.Module):
    """Patches (strided conv) + class token + learned positions -> bidirectional blocks ->
    LayerNorm -> the class token's feature."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        n = (image_size // patch) ** 2
        self.patches = nn.Conv2d(3, dim, patch, patch)  # (B, W, S/p, S/p)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, causal=False) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.width = dim

    def forward(self, x):
        t = self.patches(x).flatten(2).transpose(1, 2)  # (B, N, W)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos  # (B, N+1, W)
        for block in self.blocks:
            t = block(t)
        return self.norm(t)[:, 0]  # (B, W)


def cnn_tower(widths: list[int]) -> nn.Module:
    """The vision lab's CNN (conv-BN-ReLU stages, max-pools, global average pool), headless."""
    from lmlab.vision.models import CNN

    cnn = CNN(3, 1, tuple(widths))
    cnn.head = nn.Identity()
    cnn.width = widths[-1]
    return cnn


class CLIP(nn.Module):
    def __init__(self, image: nn.Module, text: nn.Module, embed_dim: int):
        super().__init__()
        self.image, self.text = image, text
        self.image_proj = nn.Linear(image.width, embed_dim, bias=False)
        self.text_proj = nn.Linear(text.width, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), capped at 100 (the cap passes no gradient, as CLIP's clamp)."""
        return self.logit_scale.clamp(max=math.log(MAX_SCALE)).exp()

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.image(x)  # (B, W_img): what the linear probe reads

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image(x)), dim=-1)  # (B, E)

    def encode_text(self, ids: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text(ids, eos)), dim=-1)  # (B, E)

    def forward(self, x, ids, eos):
        return self.encode_image(x), self.encode_text(ids, eos), self.scale()


def build_clip(shape: ClipShape) -> CLIP:
    from lmlab.errors import ConfigError

    if shape.image_encoder == "vit":
        if shape.image_size % shape.patch:
            raise ConfigError(f"image_size={shape.image_size} is not a multiple of "
                              f"patch={shape.patch}")
        image = ViTTower(shape.image_size, shape.patch, shape.vit_dim, shape.vit_depth,
                         shape.heads)
    else:
        image = cnn_tower(shape.widths)
    text = TextTower(shape.text_dim, shape.text_depth, shape.heads)
    return CLIP(image, text, shape.embed_dim)


def save_clip(model: CLIP, shape: ClipShape, folder, extra: dict | None = None) -> None:
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "clip.json").write_text(json.dumps({**asdict(shape), **(extra or {})}, indent=1))


def load_clip(folder) -> tuple[CLIP, dict]:
    """A saved CLIP (a final/ folder or a run folder) and its clip.json."""
    import json
    from pathlib import Path

    folder = Path(folder)
    if (folder / "final" / "clip.json").is_file():
        folder = folder / "final"
    meta = json.loads((folder / "clip.json").read_text())
    names = ClipShape.__dataclass_fields__
    model = build_clip(ClipShape(**{k: v for k, v in meta.items() if k in names}))
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    return model.eval(), meta
