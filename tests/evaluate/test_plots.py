"""The plots: trajectory.png's title, start ring and CTE path, drawn from a synthetic trace."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from pitlane.evaluate.plots import CTE_COLOURS, laps_done, write_plots
from pitlane.evaluate.report import END_LAPS, END_TIME_LIMIT, Episode, EvalParams, ModelInfo, Trace, summarize
from pitlane.twin.scenes import load_scene


def _two_laps(track) -> Trace:
    trace = Trace()
    n = 400
    for i in range(n + 1):
        s = 2 * track.length_m * i / n
        x, y, yaw = track.pose_at(s)
        off = 0.2 * math.sin(s / 3.0)  # [m] right of the centerline
        trace.append(i * 0.05, x + off * math.sin(yaw), y - off * math.cos(yaw), off, 1.5, 0.0, 0.3)
    return trace


def _report(track, trace, laps_requested: int, end_reason: str):
    episode = Episode(trace, laps_completed=2, end_reason=end_reason, progress_m=None, wall_seconds=61.2)
    report = summarize(episode, track, ModelInfo("pilot.tflite"), EvalParams(laps=max(laps_requested, 1)))
    return dataclasses.replace(report, laps_requested=laps_requested)  # 0: a car run, bounded by time


def test_a_drive_bounded_by_time_is_not_titled_with_a_lap_goal():
    track = load_scene("generated_track")
    trace = _two_laps(track)
    assert laps_done(_report(track, trace, 3, END_TIME_LIMIT)) == "2/3 laps"
    assert laps_done(_report(track, trace, 0, END_TIME_LIMIT)) == "2 laps in 61 s"


def test_trajectory_shows_start_ring_over_the_end_and_a_bright_cte_path(tmp_path):
    """A car that completes its laps ends where it started: the start ring stays visible around the end
    marker, and the path is drawn in bright colours (no dark end of the colour map on the dark road)."""
    track = load_scene("generated_track")
    trace = _two_laps(track)
    write_plots(track, trace, _report(track, trace, 2, END_LAPS), tmp_path)
    png = cv2.imread(str(tmp_path / "trajectory.png"))
    assert png is not None
    img = cv2.cvtColor(png, cv2.COLOR_BGR2RGB).astype(int)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    lime = (g > 230) & (r < 60) & (b < 60)  # the start ring (matplotlib's "lime")
    assert lime.sum() > 100, "the start ring is drawn, not hidden under the end marker"
    for colour in CTE_COLOURS:
        assert max(int(colour[i : i + 2], 16) for i in (1, 3, 5)) >= 0xE5, f"{colour} is bright"
    cyan = (b > 200) & (g > 200) & (r < 80)  # the low-|CTE| end of the path
    assert cyan.sum() > 200
    assert np.isfinite(img).all()
