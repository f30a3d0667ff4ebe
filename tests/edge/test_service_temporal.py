"""The service with a temporal selector: a picture the selector declines (event trigger, nothing
happening) is not queued, and every queued frame is reported back with its counter, so a key
frame becomes the reference under the counter the outbox gave it."""

from __future__ import annotations

import numpy as np
from test_service import FakeSelector, make_service, write_folder

from edge.config import EdgeConfig
from edge.service import RunLimits


class EventSelector(FakeSelector):
    def __init__(self) -> None:
        super().__init__()
        self.queued_calls: list[tuple[int, int]] = []

    def select(self, image: np.ndarray):
        if int(image[0, 0, 0]) % 2:  # odd pictures: nothing happening
            return None
        return super().select(image)

    def queued(self, selection, counter: int) -> None:
        self.queued_calls.append((int(selection.indices[0]), counter))


def test_declined_pictures_are_not_queued_and_queued_ones_are_reported(tmp_path):
    write_folder(tmp_path / "cam", 5)  # pixel values 10..14
    sel = EventSelector()
    service, sent, box = make_service(tmp_path, selector=sel)
    with box:
        assert service.run(RunLimits(max_frames=10, drain_timeout_s=10)) == 0
    assert sel.queued_calls == [(10, 1), (12, 2), (14, 3)]
    assert len(sent) == 6 and service.frames_queued == 3


def test_config_refuses_delta_frames_on_a_one_layer_tokenizer():
    cfg = EdgeConfig()
    cfg.temporal.enabled = True
    cfg.pipeline.tokenizer_id = 1
    assert any(key == "temporal.enabled" for key, _ in cfg.problems())
    cfg.pipeline.tokenizer_id = 3
    assert not any(key == "temporal.enabled" for key, _ in cfg.problems())


def test_temporal_table_loads_from_toml_with_paths_relative_to_the_file(tmp_path):
    from edge.config import load_edge_config
    from link.config import ConfigError

    text = """
[device]
id = 5
key_file = "keys/5.key"
[capture]
source = "video"
[capture.video]
path = "walk.avi"
step = 5
[pipeline]
tokenizer_id = 3
[temporal]
enabled = true
key_interval = 20
threshold = 0.4
event_classes = ["person", "car"]
heartbeat_s = 600
codebook = "cb.npy"
"""
    (tmp_path / "edge.toml").write_text(text)
    cfg = load_edge_config(tmp_path / "edge.toml")
    t = cfg.temporal
    assert t.enabled and t.key_interval == 20 and t.event_classes == ["person", "car"]
    assert t.codebook == tmp_path / "cb.npy" and cfg.capture.video.path == str(tmp_path / "walk.avi")
    (tmp_path / "bad.toml").write_text(text.replace("key_interval = 20", "key_interval = 0"))
    try:
        load_edge_config(tmp_path / "bad.toml")
    except (ConfigError, ValueError) as exc:
        assert "key_interval" in str(exc)
    else:
        raise AssertionError("key_interval = 0 accepted")
