"""A fresh copy of the tiny session GPT for each test (alignment trains its policy in place)."""

from __future__ import annotations

import copy

import pytest


@pytest.fixture
def policy(gpt_target):
    model = copy.deepcopy(gpt_target)
    model.network().requires_grad_(True)
    return model
