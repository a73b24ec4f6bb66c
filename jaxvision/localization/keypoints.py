"""DeepPose-style keypoint regression targets on MNIST scenes (Toshev & Szegedy, CVPR 2014).

The same :class:`~jaxvision.localization.heads.Localizer` with ``num_outputs = 2 * K``
regresses ``K`` keypoints instead of a box. On single-digit scenes we use three keypoints of
the digit's ink: its centre of mass, its top-most and its bottom-most ink point.
"""

from __future__ import annotations

import numpy as np

from jaxvision.data.scenes import Scenes

NUM_KEYPOINTS = 3


def digit_keypoints(scenes: Scenes, threshold: int = 128) -> np.ndarray:
    """Keypoints of the first digit of each scene, in pixels.

    Returns ``[N, 3, 2] float32`` (x, y): ink centroid, top-most ink point (mean x of the
    top ink row), bottom-most ink point. Pixels ``>= threshold`` count as ink.
    """
    out = np.zeros((len(scenes.images), NUM_KEYPOINTS, 2), np.float32)
    for n, img in enumerate(scenes.images[..., 0]):
        x1, y1, x2, y2 = scenes.boxes[n, 0].astype(int)
        ys, xs = np.nonzero(img[y1:y2, x1:x2] >= threshold)
        if len(ys) == 0:
            raise ValueError(f"scene {n} has no ink above {threshold} in its first box")
        ys, xs = ys + y1 + 0.5, xs + x1 + 0.5
        top, bottom = ys.min(), ys.max()
        out[n] = [(xs.mean(), ys.mean()), (xs[ys == top].mean(), top),
                  (xs[ys == bottom].mean(), bottom)]
    return out
