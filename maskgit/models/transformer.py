"""The bidirectional transformer of MaskGIT (stage 2), written out by hand.

A BERT-style encoder over the h*w token grid of the VQGAN: token embedding
(codebook_size + 1 entries, the last one is the mask token), learned position
embeddings, `n_layers` blocks of multi-head self-attention and an MLP, and an
output head tied to the token embedding plus a per-position bias, as in the lab.
No causal mask: every token sees every other token.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from maskgit.choices import ATTENTION_KINDS, POS_INITS

DEFAULT_CONFIG = {
    "dim": 256,
    "n_layers": 4,
    "n_heads": 4,
    "mlp_dim": 512,
    "dropout": 0.1,
    "attention": "manual",
    "norm_first": False,
    "pos_init": "sincos",
}


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: q/k/v projections, scaled dot product, softmax,
    dropout on the attention weights, output projection.

    `attention="sdpa"` computes the same thing with
    torch.nn.functional.scaled_dot_product_attention (fused kernels); the manual
    path is the reference that the tests compare it with.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float, attention: str = "manual"):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"transformer.dim ({dim}) must be divisible by transformer.n_heads ({n_heads})")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"transformer.attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.attention = attention
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(dropout)
        self.dropout_p = dropout

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self._split_heads(self.q(x)), self._split_heads(self.k(x)), self._split_heads(self.v(x))
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, N, N)
            weights = self.attn_dropout(scores.softmax(dim=-1))
            out = weights @ v
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Block(nn.Module):
    """Encoder layer. Post-norm (the lab's and BERT's) by default: x = LN(x + f(x))."""

    def __init__(self, dim: int, n_heads: int, mlp_dim: int, dropout: float, attention: str, norm_first: bool):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadSelfAttention(dim, n_heads, dropout, attention)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x)))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.mlp(x)))


def sincos_2d(num_tokens: int, dim: int, base: float = 100.0, amplitude: float = 0.03) -> torch.Tensor:
    """(num_tokens, dim) 2-D sine-cosine position codes of a square token grid, row-major.

    A quarter of the channels each: sin and cos of the column, sin and cos of the row,
    at frequencies from 1 down to 1/base radians per token. Used to *initialise* the
    learned position embeddings: neighbouring tokens start out similar, so the model
    need not discover the grid's 2-D layout from scratch (docs/findings.md).
    The amplitude gives the std of the random init, so after the embedding
    LayerNorm neither the token nor the position embedding drowns the other.
    """
    grid = math.isqrt(num_tokens)
    if grid * grid != num_tokens:
        raise ValueError(f"sin-cos position init needs a square token grid, got {num_tokens} tokens")
    quarter = dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=torch.float64) / max(quarter, 1))
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    x, y = xs.flatten()[:, None] * freqs, ys.flatten()[:, None] * freqs
    codes = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    codes = F.pad(codes, (0, dim - codes.shape[1]))  # dim not divisible by 4: zero channels
    return (amplitude * codes).float()


class BidirectionalTransformer(nn.Module):
    def __init__(self, codebook_size: int, num_tokens: int, config: dict | None = None):
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        self.config = cfg
        self.codebook_size = codebook_size
        self.mask_token_id = codebook_size  # the extra embedding row after the real codes
        self.num_tokens = num_tokens
        dim = cfg["dim"]
        self.tok_emb = nn.Embedding(codebook_size + 1, dim)
        self.pos_emb = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.emb_norm = nn.LayerNorm(dim)
        self.emb_drop = nn.Dropout(cfg["dropout"])
        self.blocks = nn.ModuleList(
            Block(dim, cfg["n_heads"], cfg["mlp_dim"], cfg["dropout"], cfg["attention"], cfg["norm_first"])
            for _ in range(cfg["n_layers"])
        )
        self.final_norm = nn.LayerNorm(dim) if cfg["norm_first"] else nn.Identity()
        # BERT's prediction head: a transform, then logits from the (tied) token embedding.
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.bias = nn.Parameter(torch.zeros(num_tokens, codebook_size + 1))
        self.apply(self._init_weights)
        if cfg["pos_init"] == "sincos":
            with torch.no_grad():
                self.pos_emb.copy_(sincos_2d(num_tokens, dim)[None])
        elif cfg["pos_init"] == "normal":
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        else:
            raise ValueError(f"transformer.pos_init must be one of {', '.join(POS_INITS)}, got {cfg['pos_init']!r}")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) long in [0, codebook_size] -> logits (B, N, codebook_size + 1)."""
        x = self.emb_drop(self.emb_norm(self.tok_emb(tokens) + self.pos_emb))
        for block in self.blocks:
            x = block(x)
        h = self.head(self.final_norm(x))
        return h @ self.tok_emb.weight.t() + self.bias

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay only the matrices of Linear layers; norms, biases and
        embeddings (token, position, per-position output bias) are not decayed."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
