"""Shared fixtures. Every test gathers ICE candidates on loopback only and uses no ICE servers."""

from __future__ import annotations

import os

os.environ["DUET_ICE_HOSTS"] = "127.0.0.1"

import pytest

import duet as sy


@pytest.fixture
def pair():
    owner, scientist = sy.duet_pair()
    yield owner, scientist
    scientist.close()
    owner.close()
