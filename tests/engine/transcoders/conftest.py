"""Fixtures for transcoder loading/saving tests: small random sets and a check that two sets are equal.

Hub downloads are tested in tests/engine/test_hub.py against tests/support/fake_hub.py."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from tests.support.transcoders import random_transcoders

from attrgraph.engine.transcoders import Activation, InputSite, TranscoderSet

MakeSet = Callable[..., TranscoderSet]


def assert_same_set(expected: TranscoderSet, actual: TranscoderSet) -> None:
    assert actual.n_layers == expected.n_layers
    assert actual.cross_layer == expected.cross_layer
    assert actual.activation is expected.activation
    assert actual.topk == expected.topk
    assert actual.input_site is expected.input_site
    assert (actual.d_transcoder, actual.d_model) == (expected.d_transcoder, expected.d_model)
    for layer in range(expected.n_layers):
        a, b = expected.layer(layer), actual.layer(layer)
        for field in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "W_skip"):
            ta, tb = getattr(a, field), getattr(b, field)
            assert (ta is None) == (tb is None), f"layer {layer} {field}"
            if ta is not None:
                assert torch.equal(ta, tb), f"layer {layer} {field} differs"


@pytest.fixture
def make_set() -> MakeSet:
    """Small random sets: per-layer ReLU read at the MLP input unless the test says otherwise."""
    return functools.partial(
        random_transcoders,
        n_layers=3,
        d_model=6,
        d_transcoder=10,
        activation=Activation.RELU,
        input_site=InputSite.MLP_IN,
        name="toy",
    )


@pytest.fixture
def assert_same() -> Callable[[TranscoderSet, TranscoderSet], None]:
    return assert_same_set
