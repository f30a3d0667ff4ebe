"""Interval and motion schedules: differencing on a small grey image, cooldown and heartbeat."""

from __future__ import annotations

import numpy as np

from edge.schedule import MotionSchedule, ScheduleConfig, changed_fraction, make_schedule, small_grey


def scene(seed: int = 0, square: tuple[int, int] | None = None) -> np.ndarray:
    img = np.full((120, 160, 3), 90, np.uint8)
    img += np.random.default_rng(seed).integers(0, 6, img.shape, dtype=np.uint8)  # sensor noise
    if square:
        y, x = square
        img[y : y + 30, x : x + 30] = 250
    return img


def test_small_grey_is_downscaled_and_weighted():
    grey = small_grey(np.full((120, 160, 3), (255, 0, 0), np.uint8), 40)
    assert grey.shape == (30, 40) and np.allclose(grey, 0.299 * 255, atol=0.01)


def test_interval_sends_every_look():
    s = make_schedule(ScheduleConfig(mode="interval", interval_s=30))
    assert s.poll_s == 30 and s.decide(scene()).send


def test_motion_triggers_on_change_not_on_noise():
    s = MotionSchedule(ScheduleConfig(mode="motion", min_gap_s=0, max_gap_s=0, width=40))
    assert s.decide(scene(0), now=0).reason == "first"
    assert not s.decide(scene(1), now=1).send  # noise only
    moved = s.decide(scene(2, square=(40, 60)), now=2)
    assert moved.send and moved.reason.startswith("motion")
    assert not s.decide(scene(3, square=(40, 60)), now=3).send  # same scene again: re-armed
    assert changed_fraction(small_grey(scene(0), 40), small_grey(scene(0, (0, 0)), 40), 25) > 0.02


def test_motion_cooldown_and_heartbeat():
    s = MotionSchedule(ScheduleConfig(mode="motion", min_gap_s=10, max_gap_s=100, width=40))
    s.decide(scene(0), now=0)
    assert s.decide(scene(1, square=(10, 10)), now=5).reason.startswith("cooldown")
    assert s.decide(scene(1, square=(10, 10)), now=11).send
    assert not s.decide(scene(2, square=(10, 10)), now=50).send
    assert s.decide(scene(3, square=(10, 10)), now=112).reason == "heartbeat"


def test_bad_values_name_their_key():
    bad = ScheduleConfig(pixel_delta=0, min_fraction=2).check("schedule")
    assert [k for k, _ in bad] == ["schedule.pixel_delta", "schedule.min_fraction"]
