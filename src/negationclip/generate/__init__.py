"""Negation data generation: P1 (objects), Rand-P1 (random objects), P2 (beyond objects), with
``openai``, ``hf`` and ``rules`` backends per role, resumable and sharded."""

from .export import export_records
from .factory import BackendOptions, RoleFactory
from .p1 import p1_items, run_p1
from .p2 import p2_items, run_p2
from .prompts import PROMPT_VERSION
from .records import GenRecord, ledger_path, read_ledger, read_records
from .runner import RunConfig, Runner, WorkItem, parse_shard
from .stats import format_stats, merge_outputs, plot_stats, run_stats

__all__ = [
    "BackendOptions", "RoleFactory", "GenRecord", "RunConfig", "Runner", "WorkItem",
    "PROMPT_VERSION", "run_p1", "run_p2", "p1_items", "p2_items", "parse_shard",
    "read_records", "read_ledger", "ledger_path", "run_stats", "format_stats", "plot_stats",
    "merge_outputs", "export_records",
]
