"""The outside plugin must be installed (by path) for these tests: say how when it is not."""

from __future__ import annotations

from importlib import metadata

import pytest


@pytest.fixture(autouse=True, scope="session")
def _toy_plugin_installed():
    try:
        metadata.distribution("genview-toy-plugin")
    except metadata.PackageNotFoundError:
        pytest.fail("the test plugin is not installed: pip install -r requirements-test-plugins.txt "
                    "(-e ./tests/plugins/genview_toy_plugin); genview's own entry points also need genview "
                    "installed (pip install -e .), not only on PYTHONPATH", pytrace=False)
