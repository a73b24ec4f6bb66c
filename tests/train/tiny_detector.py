"""A tiny Faster R-CNN for the engine's detection tests (registered as
``tiny_fasterrcnn_test_model``): two conv levels (strides 4 and 8, 8 channels), the real RPN
and RoI heads with small counts, so that its programs compile in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.detection.faster_rcnn import FasterRCNN
from jaxvision.detection.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from jaxvision.detection.rpn import RegionProposalNetwork, RPNHead
from jaxvision.models import list_models, register_model


class _TinyBackbone(nn.Module):
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    out_channels: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        c0 = nn.relu(nn.Conv(self.out_channels, (4, 4), strides=4, name="c0", **kw)(x))
        c1 = nn.relu(nn.Conv(self.out_channels, (3, 3), strides=2, name="c1", **kw)(c0))
        return {"0": c0, "1": c1}

    def frozen_patterns(self, prefix: str = "") -> list[str]:
        return []


def tiny_fasterrcnn_test_model(num_classes: int = 4, dtype: Any = jnp.float32,
                               param_dtype: Any = jnp.float32, **kw: Any) -> FasterRCNN:
    k = {"dtype": dtype, "param_dtype": param_dtype}
    rpn = RegionProposalNetwork(RPNHead(3, **k), anchor_sizes=((16,), (32,)),
                                aspect_ratios=((0.5, 1.0, 2.0),) * 2, pre_nms_top_n_train=64,
                                pre_nms_top_n_test=64, post_nms_top_n_train=32,
                                post_nms_top_n_test=32, batch_size_per_image=32)
    heads = RoIHeads(TwoMLPHead(16, **k), FastRCNNPredictor(num_classes, **k),
                     featmap_names=("0", "1"), detections_per_img=10,
                     batch_size_per_image=16, score_thresh=kw.pop("score_thresh", 0.05))
    if kw:
        raise TypeError(f"tiny_fasterrcnn_test_model: unexpected {sorted(kw)}")
    return FasterRCNN(_TinyBackbone(**k), rpn, heads, num_classes=num_classes)


if "tiny_fasterrcnn_test_model" not in list_models():
    register_model(tiny_fasterrcnn_test_model)


def voc_subset(voc: Path, root: Path, counts: dict[str, int]) -> Path:
    """A VOC-layout folder at ``root`` holding the first ``counts[split]`` images of each
    split of the VOC folder ``voc`` (symbolic links to its annotations and images)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for split, n in counts.items():
        stems = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:n]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            for sub, ext in (("Annotations", "xml"), ("JPEGImages", "jpg")):
                (root / sub / f"{stem}.{ext}").symlink_to(voc / sub / f"{stem}.{ext}")
    return root
