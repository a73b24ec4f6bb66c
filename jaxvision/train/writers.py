"""Metric writers: JSON lines (always) and TensorBoard event files (tensorboardX).

``<workdir>/metrics.jsonl`` holds one JSON object per write, ``{"step": int, "kind":
"train" | "eval" | "final", ...scalars}``, appended across restarts (a resumed run
continues the file). Only process 0 writes.

Images (:meth:`MetricWriter.write_images`, a task's pictures of its predictions at an
evaluation) go to TensorBoard as ``<kind>/<name>/<k>`` and, for people without TensorBoard,
to ``<workdir>/images/<step>/<name>_<k>.png``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxvision.train import workdir as wd


class MetricWriter:
    """Writes scalars to ``metrics.jsonl`` and, if requested and installed, TensorBoard."""

    def __init__(self, workdir: str | Path, tensorboard: bool = True) -> None:
        self.enabled = jax.process_index() == 0
        self.path = wd.metrics_path(workdir)
        self.workdir = Path(workdir)
        self._tb: Any = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                warnings.warn("tensorboardX is not installed: TensorBoard events are not "
                              "written (pip install tensorboardX, or set tensorboard=False)",
                              stacklevel=2)
            else:
                self._tb = SummaryWriter(str(wd.tensorboard_dir(workdir)))

    def write(self, step: int, kind: str, scalars: dict[str, float]) -> None:
        """Appends ``scalars`` at ``step`` (``kind`` prefixes the TensorBoard tags)."""
        if not self.enabled:
            return
        record = {"step": int(step), "kind": kind, "time": round(time.time(), 3),
                  **{k: float(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))

    def write_images(self, step: int, kind: str, images: dict[str, np.ndarray]) -> list[Path]:
        """Writes each ``images[name]`` ([K, H, W, 3] uint8) as K PNGs
        ``<workdir>/images/<step>/<name>_<k>.png`` and, with TensorBoard, as the images
        ``<kind>/<name>/<k>`` at ``step``. Returns the PNG paths (none off process 0)."""
        if not self.enabled or not images:
            return []
        from PIL import Image

        folder = wd.images_dir(self.workdir, step)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, batch in images.items():
            batch = np.asarray(batch)
            if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
                raise ValueError(f"write_images: {name!r} must be [K, H, W, 3] uint8, got "
                                 f"shape {batch.shape} dtype {batch.dtype}")
            for k, image in enumerate(batch):
                path = folder / f"{name.replace('/', '_')}_{k}.png"
                Image.fromarray(image, "RGB").save(path)
                paths.append(path)
                if self._tb is not None:
                    self._tb.add_image(f"{kind}/{name}/{k}", image, int(step),
                                       dataformats="HWC")
        return paths

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of ``<workdir>/metrics.jsonl`` (optionally only those of ``kind``)."""
    path = wd.metrics_path(workdir)
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]
