"""Fixtures of the hardening suite: a stand-in model and a gunicorn relay shared by a whole
module (each test resets what it changes), and the figures the README quotes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts.fakes.openai import Behaviour, StandinModel
from tests.conftest import API_KEY, GunicornRelay, launch_gunicorn, stop_gunicorn
from tests.hardening.support import FIGURES, SHORT_GREETING


def _standin() -> Iterator[StandinModel]:
    """The suite's stand-in: 8x real time, a 600 ms greeting (75 ms of wall time)."""
    standin = StandinModel(api_key=API_KEY, speed=8.0, greeting_audio=SHORT_GREETING).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def model() -> Iterator[StandinModel]:
    """The stand-in Realtime model for a module."""
    yield from _standin()


@pytest.fixture
def fresh_model() -> Iterator[StandinModel]:
    """A stand-in of the test's own (its counts start at zero)."""
    yield from _standin()


@pytest.fixture
def normal_model(model: StandinModel) -> Iterator[StandinModel]:
    """The module's stand-in, well-behaved again after the test whatever it did."""
    model.behaviour = Behaviour.NORMAL
    yield model
    model.behaviour = Behaviour.NORMAL
    model.greeting_audio = SHORT_GREETING


@pytest.fixture(scope="module")
def gunicorn(model: StandinModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornRelay]:
    """One gunicorn relay (one worker) for a module, aimed at the module's stand-in.

    (Not named ``relay``: tests/conftest.py's ``relay`` is an in-process one.)
    """
    running = launch_gunicorn(model.url, Path(tmp_path_factory.mktemp("gunicorn")),
                              TWILIO_START_TIMEOUT_SECONDS="1", OPENAI_CONNECT_TIMEOUT_SECONDS="1",
                              OPENAI_SESSION_TIMEOUT_SECONDS="2")
    yield running
    stop_gunicorn(running)


@pytest.fixture
def teardown() -> Iterator[Callable[[Callable[[], None]], None]]:
    """``teardown(fn)``: run ``fn`` after the test, pass or fail (sockets a failure left open)."""
    pending: list[Callable[[], None]] = []
    yield pending.append
    for fn in reversed(pending):
        fn()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the README's "Reliability" section quotes."""
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
