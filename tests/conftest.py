import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NEGATIONCLIP_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BENCHMARKS = SHARED / "data" / "benchmarks"


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The real benchmark annotation files (no images) in ../shared/data/benchmarks."""
    if not BENCHMARKS.is_dir():
        pytest.skip(f"{BENCHMARKS} not present")
    return BENCHMARKS


def load_reference(name: str):
    """Load a verbatim OpenAI reference file from tests/_reference by path."""
    import importlib.util

    path = REPO / "tests" / "_reference" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_ref_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
