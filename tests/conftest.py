"""Shared fixtures: one tiny corpus made with the real TTS engines, once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_CLIPS = 160


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from edgekws.synth import synthesize

    out = tmp_path_factory.mktemp("corpus")
    synthesize(out, TINY_CLIPS, seed=0, workers=2)
    return out


@pytest.fixture()
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"
