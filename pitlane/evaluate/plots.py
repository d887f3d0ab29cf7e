"""Plots a person reads at a glance: where the car drove on the track map, and CTE / speed over time.

matplotlib (Agg backend, never a display) is imported lazily, so evaluation without plots never loads it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from pitlane.evaluate.report import END_OFF_TRACK, Report, Trace
from pitlane.twin.texture import texture_for

TRAJECTORY_PNG = "trajectory.png"
TIMESERIES_PNG = "cte_speed.png"
CTE_COLOURS = ("#00e5ff", "#76ff03", "#ffea00", "#ff9100", "#ff1744")  # |CTE| 0 -> the road edge and beyond


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def laps_done(report: Report) -> str:
    """ "2/3 laps" against a lap goal; "5 laps in 60 s" for a drive bounded by time (laps_requested 0)."""
    if report.laps_requested > 0:
        return f"{report.laps_completed}/{report.laps_requested} laps"
    return f"{report.laps_completed} laps in {report.wall_seconds:.0f} s"


def plot_trajectory(track, trace: Trace, report: Report, path: str | Path | io.BytesIO) -> None:
    """The driven path over the top-down track texture, coloured by |CTE|; start and end marked."""
    from matplotlib.collections import LineCollection

    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap

    cte_cmap = LinearSegmentedColormap.from_list("pitlane_cte", CTE_COLOURS)
    a = trace.arrays()
    tex = texture_for(track)
    level = 1 if len(tex.levels) > 1 else 0
    img = tex.levels[level]
    ppm = tex.px_per_m / (2**level)
    extent = (tex.x0_m, tex.x0_m + img.shape[1] / ppm, tex.y1_m - img.shape[0] / ppm, tex.y1_m)

    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    ax.imshow(img, extent=extent, origin="upper", interpolation="bilinear")
    cl = np.vstack([track.centerline, track.centerline[:1]])
    ax.plot(cl[:, 0], cl[:, 1], color="white", lw=0.6, ls=":", alpha=0.7, label="centerline")
    half_width = 0.5 * track.width_m
    if len(a["x_m"]) > 1:
        pts = np.stack([a["x_m"], a["y_m"]], axis=1)
        segs = np.stack([pts[:-1], pts[1:]], axis=1)
        cte = np.abs(a["cte_m"])
        # bright colours only (no dark end, unlike turbo or viridis) on a dark casing: readable on the dark
        # road and on light ground alike
        ax.plot(pts[:, 0], pts[:, 1], color="black", lw=4.8, alpha=0.75, solid_capstyle="round", zorder=3)
        lc = LineCollection(
            segs,
            cmap=cte_cmap,
            norm=plt.Normalize(0.0, max(half_width, float(cte.max()))),
            lw=2.6,
            zorder=4,
        )
        lc.set_array(cte[1:])
        ax.add_collection(lc)
        cbar = fig.colorbar(lc, ax=ax, shrink=0.8)
        cbar.set_label(f"|CTE| [m] (road edge at {half_width:.2f} m)")
        end_style = "X" if report.end_reason == END_OFF_TRACK else "s"
        # the end is drawn small and the start as a wide ring around it: a car that finished its laps ends
        # where it started, and both stay visible
        ax.plot(
            pts[-1, 0],
            pts[-1, 1],
            end_style,
            color="red",
            ms=8,
            mec="black",
            zorder=5,
            label=f"end: {report.end_reason}",
        )
        ax.plot(pts[0, 0], pts[0, 1], "o", mfc="none", mec="lime", mew=3, ms=17, zorder=6, label="start")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_xlabel("x [m] (east)")
    ax.set_ylabel("y [m] (north)")
    ax.set_title(
        f"{report.model} on {report.scene}: {laps_done(report)}, max |CTE| {report.max_abs_cte:.2f} m"
    )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85, facecolor="0.25", labelcolor="white")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_timeseries(track, trace: Trace, report: Report, path: str | Path | io.BytesIO) -> None:
    """Signed CTE (with the road edges) and speed against simulated time; lap ends as vertical lines."""
    plt = _pyplot()
    a = trace.arrays()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), dpi=100, sharex=True)
    half_width = 0.5 * track.width_m
    ax1.plot(a["time_s"], a["cte_m"], color="tab:blue", lw=1.2, label="CTE (+ = right of centerline)")
    for sign in (-1, 1):
        ax1.axhline(sign * half_width, color="tab:red", ls="--", lw=1)
    ax1.axhline(0.0, color="grey", lw=0.6)
    ax1.set_ylabel("CTE [m]")
    ax1.set_ylim(-1.3 * half_width, 1.3 * half_width)
    ax1.legend(loc="upper right", fontsize=8)
    ax2.plot(a["time_s"], a["speed_mps"], color="tab:green", lw=1.2, label="speed")
    ax2.axhline(report.mean_speed, color="tab:green", ls=":", lw=1, label=f"mean {report.mean_speed:.2f} m/s")
    ax2.set_ylabel("speed [m/s]")
    ax2.set_xlabel("simulated time [s]")
    ax2.legend(loc="lower right", fontsize=8)
    for ax in (ax1, ax2):
        for i, t in enumerate(a["lap_end_s"]):
            ax.axvline(t, color="black", lw=0.8, alpha=0.6)
            if ax is ax1:
                ax.text(t, 1.2 * half_width, f" lap {i + 1}", fontsize=8, va="top")
        for t in a["off_track_s"]:
            ax.axvline(t, color="red", lw=1.5)
        ax.grid(alpha=0.3)
    laps = ", ".join(f"{t:.1f}" for t in report.lap_times) or "none"
    ax1.set_title(f"{report.model} on {report.scene}: end = {report.end_reason}; lap times [s]: {laps}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def render_plots(track, trace: Trace, report: Report) -> dict[str, bytes]:
    """The plots as PNG bytes by file name: drawn where the run drove (an evaluation worker), written where
    the reports are collected (this machine)."""
    out: dict[str, bytes] = {}
    for name, plot in ((TRAJECTORY_PNG, plot_trajectory), (TIMESERIES_PNG, plot_timeseries)):
        buf = io.BytesIO()
        plot(track, trace, report, buf)
        out[name] = buf.getvalue()
    return out


def write_plots(track, trace: Trace, report: Report, report_dir: str | Path) -> list[str]:
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(track, trace, report)
    for name, data in plots.items():
        (out / name).write_bytes(data)
    return list(plots)
