"""Every docstring example in ``src/poolkit`` runs and prints what it shows (``make test`` runs this file).

One test per module; lab modules are included when the lab's dependencies import (else skipped, with the
reason). The same examples also run with ``pytest --doctest-modules src/poolkit``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import poolkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(poolkit.__path__, prefix="poolkit.")
                 if not m.name.endswith("__main__"))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as err:
        if name.startswith("poolkit.lab"):
            pytest.skip(f"{name}: the lab's dependencies do not import here ({err})")
        raise
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(module, name) if t.examples]  # objects defined in this module only
    if not tests:
        pytest.skip(f"{name} has no docstring examples")
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_public_api_has_examples():
    """The public modules carry examples at all (a suite that finds none cannot fail)."""
    with_examples = []
    for name in ("poolkit", "poolkit.registry", "poolkit.nn.order", "poolkit.nn.power", "poolkit.functional.order"):
        module = importlib.import_module(name)
        if any(t.examples for t in doctest.DocTestFinder().find(module, name)):
            with_examples.append(name)
    assert len(with_examples) == 5, with_examples
