"""docs/security.md lists every case of the hostile corpus (the threat model and its
tests stay one list)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_hostile_case_is_in_the_threat_model() -> None:
    text = (REPO / "docs" / "security.md").read_text()
    cases = sorted(p.stem for p in (REPO / "tests" / "hostile" / "cases").glob("*.py")
                   if p.stem != "__init__")
    assert len(cases) > 70
    missing = [c for c in cases if f"| `{c}` |" not in text]
    assert not missing, f"hostile cases missing from docs/security.md: {missing}"
