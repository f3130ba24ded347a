"""Shared test setup: every test gets its own cache folder, and no test may
reach the network (the offline flag makes weight lookups fail fast)."""
import os

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("DREAMNODES_CACHE_DIR", str(cache))
    monkeypatch.setenv("DREAMNODES_OFFLINE", "1")
    monkeypatch.delenv("DREAMNODES_NO_CACHE", raising=False)
    yield
