"""Shared fixtures: tiny random generators so unit tests stay fast on a 2-core CPU."""

import pytest
import torch

from editgan.generator import Generator, GeneratorConfig

# One intra-op thread: the tests' models are tiny, and on a 2-core machine shared with server
# subprocesses two OpenMP threads stall each other at barriers (measured 10-30x slower).
torch.set_num_threads(1)

TINY = dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=512, channel_max=32)


def tiny_config(resolution: int = 32, **overrides) -> GeneratorConfig:
    return GeneratorConfig(resolution=resolution, **{**TINY, **overrides})


@pytest.fixture
def tiny_generator():
    torch.manual_seed(0)
    g = Generator(tiny_config()).eval()
    g.mapping.w_avg.normal_()  # a non-trivial mean latent so truncation tests mean something
    return g
