import pytest
import torch

from lmlab.models import load_model


def varied(preset: str = "llama", std: float = 0.5, seed: int = 0):
    """A tiny model whose greedy output is not one repeated token: the default init (std 0.02)
    leaves the tied embedding dominating the logits, so every test would pass trivially.
    Larger random matrices give peaked, varied next-token distributions."""
    m = load_model(f"tiny:{preset}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return m.eval()


@pytest.fixture(scope="module")
def model():
    return varied()


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run 5-10x faster on one thread than on two busy cores (measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
