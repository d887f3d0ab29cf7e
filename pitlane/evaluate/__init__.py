"""Closed-loop evaluation of pilots in the twin, reports (JSON + plots), and the gate before release."""

from pitlane.evaluate.gate import GatePolicy, GateResult, check, format_table, load_policy, run_gate
from pitlane.evaluate.report import END_REASONS, EvalParams, Report, Trace, load_report
from pitlane.evaluate.run import drive, evaluate

__all__ = [
    "END_REASONS",
    "EvalParams",
    "GatePolicy",
    "GateResult",
    "Report",
    "Trace",
    "check",
    "drive",
    "evaluate",
    "format_table",
    "load_policy",
    "load_report",
    "run_gate",
]
