"""distill store verify [--repair]: is the store consistent (after a crash, a full disk)?"""

from __future__ import annotations

import argparse

from distill.store.store import Store
from distill.store.verify import KINDS, verify


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("store", help="check the local store")
    commands = p.add_subparsers(dest="store_command", required=True)
    v = commands.add_parser(
        "verify", help="check that every blob matches its digest, every name and record "
                       "points at what the store holds, and nothing half-written is left "
                       "(unpacked layers are a cache: 'distill prune' removes them)")
    v.add_argument("--repair", action="store_true",
                   help="remove what is corrupt, dangling or left over, and untag images "
                        "whose content is missing")
    v.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the store is consistent (after repairs, with --repair), else 1."""
    store = Store()
    report = verify(store, repair=args.repair)
    repaired = {id(f) for f in report.repaired}
    for finding in sorted(report.findings, key=lambda f: (KINDS.index(f.kind), str(f.path))):
        done = " (repaired)" if id(finding) in repaired else ""
        print(f"{finding.kind}: {finding.path}: {finding.what}{done}")
    checked = ", ".join(f"{n} {what}" for what, n in sorted(report.checked.items()))
    print(f"checked {checked or 'an empty store'} in {store.root}")
    counts = {k: sum(f.kind == k for f in report.findings) for k in KINDS}
    found = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    if report.consistent:
        note = f" ({'repaired' if report.repaired else 'found'}: {found})" if found else ""
        print(f"store is consistent{note}")
        return 0
    print(f"store is NOT consistent: {found}; 'distill store verify --repair' removes "
          "what is broken")
    return 1
