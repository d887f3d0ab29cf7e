"""Tub statistics: records per session and the angle/throttle (and CTE) distributions, as text and a PNG.

Counts what training would see: records that parse and are not marked deleted. Reads through the
defensive raw reader so a broken tub still gets its numbers (run ``pitlane data check`` for the faults).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pitlane.data.tub import ANGLE_KEY, THROTTLE_KEY, read_raw_tub
from pitlane.errors import UserError

CTE_KEY = "pos/cte"


@dataclass(frozen=True)
class TubStats:
    path: Path
    records: int  # usable: parsed and not deleted
    deleted: int
    sessions: dict[str, int]  # session id -> usable records
    angles: np.ndarray  # user/angle of usable records with a finite value
    throttles: np.ndarray
    cte_m: np.ndarray  # pos/cte [m] where recorded (twin tubs), else empty


def _finite(values: list[object]) -> np.ndarray:
    out = [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e300 and math.isfinite(v)
    ]
    return np.asarray(out, dtype=np.float64)


def tub_stats(path: Path) -> TubStats:
    raw = read_raw_tub(path)
    deleted = {i for i in raw.deleted_indexes if isinstance(i, int)}
    records = [line.record for line in raw.lines if line.record is not None and line.position not in deleted]
    sessions = Counter(str(r.get("_session_id", "?")) for r in records)
    return TubStats(
        path=path,
        records=len(records),
        deleted=len(deleted),
        sessions=dict(sessions),
        angles=_finite([r.get(ANGLE_KEY) for r in records]),
        throttles=_finite([r.get(THROTTLE_KEY) for r in records]),
        cte_m=_finite([r.get(CTE_KEY) for r in records]),
    )


def _summary(name: str, values: np.ndarray, unit: str = "") -> str:
    if not len(values):
        return f"  {name}: none"
    return (
        f"  {name}: mean {values.mean():+.3f}{unit}, std {values.std():.3f}{unit}, "
        f"min {values.min():+.3f}, max {values.max():+.3f}"
    )


def format_stats(stats: TubStats) -> str:
    lines = [
        f"{stats.path}: {stats.records} records ({stats.deleted} deleted), {len(stats.sessions)} sessions"
    ]
    lines += [f"  session {sid}: {count} records" for sid, count in stats.sessions.items()]
    lines.append(_summary("angle", stats.angles))
    if len(stats.angles):
        lines.append(f"  |angle| > 0.5: {np.mean(np.abs(stats.angles) > 0.5):.1%} of records")
    lines.append(_summary("throttle", stats.throttles))
    if len(stats.cte_m):
        lines.append(_summary("CTE", stats.cte_m, " m") + f", mean |CTE| {np.abs(stats.cte_m).mean():.3f} m")
    return "\n".join(lines)


STATS_PNG = "stats.png"


def stats_png_path(out: Path) -> Path:
    """Where `--out` puts the PNG: OUT itself when it ends in .png, else the folder OUT/stats.png (a bare name
    like `data` is a folder: matplotlib would have written `data.png` behind the user's back)."""
    if out.suffix.lower() == ".png" and not out.is_dir():
        return out
    if out.suffix and not out.is_dir():
        raise UserError(f"--out {out}: give a .png file or a folder (stats.png is written there)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a .png file or a folder")
    return out / STATS_PNG


def plot_stats(all_stats: list[TubStats], out: Path) -> Path:
    """Write a PNG: angle, throttle and CTE histograms (one line per tub) and records per session."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [
        (axes[0, 0], "angles", np.linspace(-1, 1, 41), "user/angle (+ = right)"),
        (axes[0, 1], "throttles", np.linspace(-1, 1, 41), "user/throttle"),
        (axes[1, 0], "cte_m", np.linspace(-0.6, 0.6, 49), "pos/cte [m] (+ = right of the line)"),
    ]
    for ax, attr, bins, title in panels:
        for stats in all_stats:
            values = getattr(stats, attr)
            if len(values):
                ax.hist(
                    np.clip(values, bins[0], bins[-1]),
                    bins=bins,
                    histtype="step",
                    linewidth=1.5,
                    label=f"{stats.path.name} (n={len(values)})",
                )
        ax.set_title(title)
        ax.set_ylabel("records")
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    ax = axes[1, 1]
    labels = [f"{s.path.name}\n{sid}" for s in all_stats for sid in s.sessions]
    counts = [n for s in all_stats for n in s.sessions.values()]
    ax.bar(range(len(counts)), counts, color="tab:blue")
    ax.set_xticks(range(len(counts)), labels, fontsize=7, rotation=30, ha="right")
    ax.set_title("records per session")
    fig.suptitle(f"{sum(s.records for s in all_stats)} records in {len(all_stats)} tubs")
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=90, format="png")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return out
