"""Sliding windows: one fully convolutional pass vs cropping and classifying every window.

Both sides score the same window grid with the same weights:

* naive: :func:`jaxvision.dense.naive_window_scores` cuts every window out of the image and
  classifies the batch of crops with the jitted classifier (the "very expensive" baseline);
* dense: the convolutionized classifier (:func:`jaxvision.models.convolutionize`) runs once
  over the whole image (:func:`jaxvision.dense.dense_window_scores`), sharing the conv work
  of overlapping windows.

Cases: LeNet-5 (11 classes, digits + background) over 112x112 and 224x224 scenes of real
MNIST test digits, 28x28 windows every 4 pixels (its network stride) -- its convolutions are
unpadded, so the scores are identical and the script asserts it; AlexNet over a 448x448
photograph, 224x224 windows every 32 pixels (its network stride) -- padded convolutions, so
scores differ near window borders (the max difference is reported, not asserted). Random
weights: speed does not depend on them. Writes ``results/dense.md``.

    python -m benchmarks.bench_dense
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from benchmarks.common import median_seconds, write_markdown
from jaxvision.data import mnist_source
from jaxvision.data.scenes import make_scenes
from jaxvision.dense import dense_window_scores, grid_size, naive_window_scores
from jaxvision.models import convolutionize, get_model, network_stride

PHOTO = Path(__file__).resolve().parents[1] / "jaxvision" / "assets" / "grace_hopper.jpg"


def bench(name: str, model: object, image: np.ndarray, window: int, *, batch_size: int,
          repeats: int, exact: bool) -> list[object]:
    """Times both ways on ``image [H, W, C] float32``; returns a results-table row."""
    shape = (window, window, image.shape[-1])
    v = model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                   jnp.zeros((1, *shape)))
    fcn, fv = convolutionize(model, v, shape)
    stride = network_stride(model, shape)
    classify = jax.jit(lambda x: model.apply(v, x))
    fcn_apply = jax.jit(lambda x: fcn.apply(fv, x))
    img = jnp.asarray(image)

    def naive() -> jax.Array:
        return jax.block_until_ready(
            naive_window_scores(classify, img, window, stride, batch_size=batch_size))

    def dense() -> jax.Array:
        return jax.block_until_ready(dense_window_scores(fcn_apply, img, window, stride))

    a, b = np.asarray(naive()), np.asarray(dense())
    diff = float(np.abs(a - b).max())
    if exact:
        # Unpadded convs: the convolutional pass *is* crop-and-classify, to float round-off.
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)
    t_naive = median_seconds(naive, warmup=1, repeats=repeats)
    t_dense = median_seconds(dense, warmup=1, repeats=repeats)
    gh, gw = grid_size(image.shape[:2], window, stride)
    row = [name, f"{image.shape[0]}x{image.shape[1]}", f"{window}/{stride}",
           f"{gh}x{gw} = {gh * gw}", f"{t_naive * 1e3:.1f}", f"{t_dense * 1e3:.1f}",
           f"**{t_naive / t_dense:.1f}x**", f"{diff:.1e}" + (" (asserted)" if exact else "")]
    print(row, flush=True)
    return row


def main() -> None:
    src = mnist_source("test")  # the embedded subset of real MNIST test digits
    batch = src.get_batch(np.arange(len(src)))
    rows = []
    lenet = get_model("lenet5", num_classes=11)
    for side, digits in ((112, (2, 4)), (224, (6, 10))):
        scene = make_scenes(batch["image"], batch["label"], 1, size=(side, side),
                            digits_per_scene=digits, scale_range=(1.0, 2.0), seed=0)
        rows.append(bench("lenet5 (MNIST scene)", lenet,
                          scene.images[0].astype(np.float32) / 255.0, 28, batch_size=256,
                          repeats=7, exact=True))
    photo = np.asarray(Image.open(PHOTO).convert("RGB").resize((448, 448), Image.BILINEAR))
    photo = (photo.astype(np.float32) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225])
    rows.append(bench("alexnet (photo)", get_model("alexnet"), photo.astype(np.float32), 224,
                      batch_size=64, repeats=3, exact=False))
    write_markdown(
        "dense", "Sliding windows: fully convolutional pass vs crop-and-classify",
        ["model (image)", "image", "window/stride", "windows", "naive ms", "dense ms",
         "speed-up", "max |naive - dense|"], rows,
        notes="""
Same windows, same weights, same process: ``naive`` crops every window and classifies the
batch (``jaxvision.dense.naive_window_scores``, the jitted classifier, batches of 256 / 64);
``dense`` runs the convolutionized classifier once over the image
(``jaxvision.dense.dense_window_scores``). Medians of 7 (LeNet-5) and 3 (AlexNet) runs
after a warm-up. LeNet-5's convolutions are unpadded, so both give the same scores (the
script asserts it); AlexNet's are padded, so a crop's convolutions see zeros at its border
where the image's see neighbours, and the scores differ there -- dense evaluation equals the
dense layers applied to the image's conv-map windows (``tests/models/test_convolutionize.py``).
The speed-up grows with the overlap between windows: window / stride = 7 (LeNet-5), 7
(AlexNet); a shared 2-core CPU, so absolute times drift, the ratio much less.
""")


if __name__ == "__main__":
    main()
