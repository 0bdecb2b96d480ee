"""The two training workloads of the compression benchmark: a small transformer LM and an MLP on digits.

Each gives the same model, batches and held-out set to every method for a given seed and rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn
from torch.nn import functional as F

from blacksoil.errors import ConfigError

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Workload:
    """A model factory, a per-(rank, step) batch source, a held-out batch and an optimizer factory."""

    name: str
    make_model: Callable[[], nn.Module]
    batch: Callable[[int, int], Batch]
    heldout: Batch
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def corpus_bytes() -> torch.Tensor:
    """The shipped text corpus as a uint8 tensor of its bytes (see data/README.md for source and licence)."""
    raw = resources.files("blacksoil.compression").joinpath("data/corpus.txt").read_bytes()
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()


class TinyLM(nn.Module):
    """A byte-level causal transformer (pre-norm blocks, learned positions), a few hundred thousand parameters."""

    def __init__(self, context: int = 64, dim: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, dim)
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.02)
        block = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 256)
        # A plain attribute, not a buffer: DDP would otherwise broadcast it every step (uncounted traffic).
        self.mask = nn.Transformer.generate_square_subsequent_mask(context)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def lm_workload(seed: int = 0, batch_size: int = 16, context: int = 64, lr: float = 3e-3) -> Workload:
    """Workload (a): next-byte prediction on the shipped corpus; the last 10% of it is held out."""
    data = corpus_bytes()
    split = int(0.9 * data.numel())
    train, test = data[:split], data[split:]
    starts = torch.arange(0, test.numel() - context - 1, context)
    heldout = (
        torch.stack([test[s : s + context] for s in starts]),
        torch.stack([test[s + 1 : s + context + 1] for s in starts]),
    )

    def batch(rank: int, step: int) -> Batch:
        g = torch.Generator().manual_seed(seed * 1_000_003 + rank * 100_003 + step)
        s = torch.randint(0, train.numel() - context - 1, (batch_size,), generator=g)
        x = torch.stack([train[i : i + context] for i in s.tolist()])
        y = torch.stack([train[i + 1 : i + context + 1] for i in s.tolist()])
        return x, y

    def make_model() -> nn.Module:
        torch.manual_seed(seed)
        return TinyLM(context=context)

    return Workload(
        "tiny_lm", make_model, batch, heldout, lambda m: torch.optim.AdamW(m.parameters(), lr=lr), _lm_loss
    )


def digits_workload(seed: int = 0, batch_size: int = 32, lr: float = 0.05) -> Workload:
    """Workload (b): a 64-256-256-10 MLP on scikit-learn's bundled digits; a fixed 20% is held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x_all = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y_all = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(1234))
    cut = int(0.8 * x_all.shape[0])
    tr, te = perm[:cut], perm[cut:]

    def batch(rank: int, step: int) -> Batch:
        g = torch.Generator().manual_seed(seed * 1_000_003 + rank * 100_003 + step)
        i = tr[torch.randint(0, tr.numel(), (batch_size,), generator=g)]
        return x_all[i], y_all[i]

    def make_model() -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

    return Workload(
        "digits_mlp",
        make_model,
        batch,
        (x_all[te], y_all[te]),
        lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9),
        F.cross_entropy,
    )


WORKLOADS: dict[str, Callable[[], Workload]] = {"tiny_lm": lm_workload, "digits_mlp": digits_workload}


def workload(name: str) -> Workload:
    """The workload called `name`; a ConfigError names the choices otherwise."""
    if name not in WORKLOADS:
        raise ConfigError(f"unknown workload {name!r}; choose one of {', '.join(sorted(WORKLOADS))}")
    return WORKLOADS[name]()


@torch.no_grad()
def heldout_loss(model: nn.Module, wl: Workload) -> float:
    """Mean loss on the held-out set (no gradient, no communication)."""
    was = model.training
    model.eval()
    x, y = wl.heldout
    value = float(wl.loss(model(x), y))
    model.train(was)
    return value if math.isfinite(value) else float("inf")
