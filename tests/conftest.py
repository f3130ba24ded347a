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


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder with recipes/, out/, outside/ (bait) and cwd/: see tests/hostile.py."""
    import sys
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    from hostile import make_sandbox

    return make_sandbox(tmp_path, monkeypatch)


# Qt (PySide6) can crash in its own static destructors while the interpreter shuts down,
# after every test has passed and pytest has reported; that would turn a green run into a
# segfault exit code. Once the session is over and reported, leave without those destructors,
# keeping pytest's exit status.
_exit_status: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import sys

    if "PySide6.QtCore" in sys.modules and "code" in _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
