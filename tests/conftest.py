"""Shared pytest options: ``--device`` runs the device-aware suites (conformance, fast-path
equivalence, torch namesakes) on another device, e.g. ``pytest --device cuda``."""

from __future__ import annotations

import os

# Under pytest-xdist each worker is one process per core: one torch thread each. Two workers with
# torch's default (a thread per core) oversubscribe the cores, and OpenMP's spinning threads then
# made the suite several times slower (11 minutes against 2 on two cores).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # subprocesses the tests start inherit it

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu",
                     help="device for the conformance, equivalence and namesake suites: cpu (default), cuda, cuda:1")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The ``--device`` under test; skips (with the reason) when CUDA is asked for and absent."""
    name = request.config.getoption("--device")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--device must be a torch device such as cpu or cuda, got {name!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device {name}: CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"--device accepts cpu or cuda[:N], got {name!r}")
    return dev
