"""Compatibility for benchmark scripts not yet on the protocol (print a table, write JSON).

New scripts use ``_harness.Bench`` (interleaved runs, spread, fraction of peak, load flag);
this keeps older ones working and marks their JSON ``"protocol": null`` so
``summary.py`` lists them as not measured by the protocol.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from _harness import load_average, machine, print_table  # noqa: F401  (re-exported)


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "protocol": None, "load_average": load_average(), "machine": machine()}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path
