"""``MetricWriter.write_images``: PNGs under ``<workdir>/images/<step>/`` and TensorBoard
image events (read back from the event file); a tiny segmentation run on real CamVid images
writes its image | truth | prediction panels at each evaluation."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboardX.proto.event_pb2 import Event

from jaxvision.train import train_and_evaluate as train
from jaxvision.train.writers import MetricWriter
from tests.train.test_segmentation_task import _config, camvid_subset  # noqa: F401 (fixture)


def read_events(workdir: Path) -> list[Event]:
    """Every event of ``<workdir>/tensorboard``: TFRecords (u64 length, u32 crc, data, u32
    crc), each an ``Event`` protobuf."""
    events = []
    for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            events.append(Event.FromString(data[pos + 12:pos + 12 + n]))
            pos += 12 + n + 4
    return events


def tensorboard_images(workdir: Path) -> dict[tuple[str, int], np.ndarray]:
    """(tag, step) -> the decoded [H, W, 3] uint8 image of each image summary."""
    out = {}
    for e in read_events(workdir):
        for v in e.summary.value:
            if v.HasField("image"):
                png = Image.open(io.BytesIO(v.image.encoded_image_string))
                out[(v.tag, e.step)] = np.asarray(png.convert("RGB"))
    return out


def test_write_images_as_pngs_and_tensorboard_events(tmp_path):
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    writer = MetricWriter(tmp_path)
    paths = writer.write_images(3, "eval", {"seg/panel": pictures})
    writer.close()
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "images/3/seg_panel_0.png", "images/3/seg_panel_1.png"]
    for k, p in enumerate(paths):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), pictures[k])
    tb = tensorboard_images(tmp_path)
    assert sorted(tb) == [("eval/seg/panel/0", 3), ("eval/seg/panel/1", 3)]
    np.testing.assert_array_equal(tb[("eval/seg/panel/1", 3)], pictures[1])


def test_segmentation_run_writes_eval_images(camvid_subset, tmp_path):  # noqa: F811
    config = _config(camvid_subset, "dense.canvas=[48, 64]", "num_train_steps=2",
                     "eval_every_steps=1", "checkpoint.every_steps=2", "checkpoint.keep_best=0",
                     "tensorboard=True")
    train(config, tmp_path)
    # 3 test images, eval batch 2: the first batch gives 2 panels at each evaluation.
    for step in (1, 2):
        pngs = sorted((tmp_path / "images" / str(step)).iterdir())
        assert [p.name for p in pngs] == ["segmentation_0.png", "segmentation_1.png"]
        panel = np.asarray(Image.open(pngs[0]))
        assert panel.shape[1] == 3 * 64 + 8 and panel.shape[0] > 48  # + the title strip
        image = panel[-48:, :64]
        assert image.std() > 10  # a real photo, not a blank
        truth = panel[-48:, 68:132]
        # Coloured where the mask has a class: the truth overlay differs from the photo.
        assert np.mean(np.any(truth != image, axis=-1)) > 0.5
        tb = tensorboard_images(tmp_path)
        np.testing.assert_array_equal(tb[("eval/segmentation/0", step)], panel)
