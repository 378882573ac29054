"""A command's module loads only what it needs (docs/architecture.md): `distill pull`,
`push`, `login` and `images` never load the builder or the sandbox."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["distill.cli.registry", "distill.cli.images",
                                    "distill.cli.load"])
def test_registry_commands_leave_the_builder_unloaded(module: str) -> None:
    """Regression: cli/registry imported --platform's parser from cli/build, which
    loaded the whole builder and sandbox for a pull."""
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.startswith("
            "('distill.builder', 'distill.sandbox'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
