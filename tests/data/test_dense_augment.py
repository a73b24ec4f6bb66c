"""jaxvision/data/dense_augment.py against torch's interpolate, torchvision's detection
transform, and the property that boxes and masks follow their image."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from jaxvision.data import dense_augment as da

FEW = settings(max_examples=25, deadline=None)


def _torch_resize(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """[H, W, C] (bilinear) or [K, H, W] (nearest) through torch's interpolate."""
    if mode == "bilinear":
        t = torch.from_numpy(x).permute(2, 0, 1)[None]
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        return out[0].permute(1, 2, 0).numpy()
    return F.interpolate(torch.from_numpy(x)[None].float(), size=size, mode=mode)[0].numpy()


# ---- torch-exact resampling -------------------------------------------------------------

@pytest.mark.parametrize("in_hw", [(333, 517), (7, 5), (1, 3)])
@pytest.mark.parametrize("out_hw", [(800, 1242), (13, 9), (3, 1), "double", "same"])
def test_resize_bilinear_matches_torch_interpolate(in_hw, out_hw):
    h, w = in_hw
    out_hw = {"double": (2 * h, w), "same": (h, w)}.get(out_hw, out_hw)
    x = np.random.default_rng(h * w).integers(0, 256, (h, w, 3)).astype(np.float32)
    ours = da.resize_bilinear(x, out_hw)
    assert ours.shape == (*out_hw, 3) and ours.dtype == np.float32
    # Measured: at most 4.6e-5 (3 float32 ulps at 255) with this torch build.
    np.testing.assert_allclose(ours, _torch_resize(x, out_hw, "bilinear"), rtol=0, atol=1e-4)
    # 2-D input gives the same values as one channel.
    np.testing.assert_array_equal(da.resize_bilinear(x[..., 0], out_hw), ours[..., 0])


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
@pytest.mark.parametrize("in_hw,out_hw", [((333, 517), (800, 1242)), ((480, 640), (13, 9)),
                                          ((7, 5), (14, 10)), ((7, 5), (7, 5)),
                                          ((1000, 300), (1333, 399)), ((5, 9), (3, 1))])
def test_resize_nearest_matches_torch_exactly(mode, in_hw, out_hw):
    m = np.random.default_rng(0).integers(0, 256, (2, *in_hw)).astype(np.uint8)
    ours = da.resize_nearest(m, out_hw, mode)
    assert ours.dtype == np.uint8 and ours.shape == (2, *out_hw)
    np.testing.assert_array_equal(ours, _torch_resize(m, out_hw, mode).astype(np.uint8))
    np.testing.assert_array_equal(da.resize_nearest(m[0], out_hw, mode), ours[0])


def test_resize_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"resize_bilinear: image must be \[H, W\]"):
        da.resize_bilinear(np.zeros((1, 2, 3, 4)), (2, 2))
    with pytest.raises(ValueError, match="resize_nearest: size must be an int >= 1"):
        da.resize_nearest(np.zeros((4, 4)), (0, 2))
    with pytest.raises(ValueError, match="mode must be one of"):
        da.resize_nearest(np.zeros((4, 4)), (2, 2), mode="bilinear")


# ---- evaluation: torchvision's GeneralizedRCNNTransform ---------------------------------

def _random_boxes(rng: np.random.Generator, k: int, h: int, w: int) -> np.ndarray:
    xs = np.sort(rng.uniform(0, w, (k, 2)), axis=1)
    ys = np.sort(rng.uniform(0, h, (k, 2)), axis=1)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1).astype(np.float32)


@pytest.mark.parametrize("hw", [(333, 517), (480, 640), (1000, 300)])
def test_eval_transform_matches_generalized_rcnn_transform(hw):
    h, w = hw
    rng = np.random.default_rng(h)
    # Float pixels with mean 0 / std 1: torchvision's normalisation becomes the identity and
    # its resize is compared unrounded.
    image = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    boxes = _random_boxes(rng, 6, h, w)
    masks = rng.integers(0, 2, (6, h, w)).astype(np.uint8)
    tv = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3).eval()
    images, targets = tv([torch.from_numpy(image).permute(2, 0, 1)],
                         [{"boxes": torch.from_numpy(boxes), "masks": torch.from_numpy(masks)}])
    out = da.eval_transform(800, 1333)({"image": image, "boxes": boxes, "masks": masks,
                                        "labels": np.arange(6, dtype=np.int32)}, None)
    th, tw = images.image_sizes[0]
    assert tuple(out["image_size"]) == (th, tw) == da.resized_size(hw, 800, 1333)
    assert out["image"].shape == (1344, 1344, 3) and out["masks"].shape == (6, 1344, 1344)
    # torchvision's batch (padded to multiples of 32) is the top-left of our canvas.
    tv_image = images.tensors[0].permute(1, 2, 0).numpy()
    bh, bw = tv_image.shape[:2]
    err = np.abs(out["image"][:bh, :bw] - tv_image).max()
    assert err < 1e-4, err  # measured 4.6e-5
    assert not out["image"][th:].any() and not out["image"][:, tw:].any()
    np.testing.assert_array_equal(out["boxes"], targets[0]["boxes"].numpy())
    np.testing.assert_array_equal(out["masks"][:, :th, :tw], targets[0]["masks"].numpy())
    assert not out["masks"][:, th:].any() and not out["masks"][:, :, tw:].any()
    np.testing.assert_array_equal(out["labels"], np.arange(6))
    np.testing.assert_array_equal(out["orig_size"], hw)
    # Back to the original pixels, as torchvision's postprocess.
    back = tv.postprocess([{"boxes": targets[0]["boxes"]}], images.image_sizes, [hw])[0]
    np.testing.assert_array_equal(
        da.postprocess_boxes(out["boxes"], out["image_size"], out["orig_size"]),
        back["boxes"].numpy())
    # uint8 images are the same resize, rounded.
    u8 = da.eval_transform(800, 1333)({"image": image.round().astype(np.uint8)}, None)["image"]
    ref = np.rint(da.resize_bilinear(image.round(), (th, tw)))
    assert u8.dtype == np.uint8 and np.array_equal(u8[:th, :tw], ref)


@FEW
@given(h=st.integers(1, 2000), w=st.integers(1, 2000), min_size=st.integers(16, 1024),
       extra=st.integers(0, 1024), seed=st.integers(0, 2**31 - 1))
def test_eval_resize_then_postprocess_maps_boxes_back(h, w, min_size, extra, seed):
    max_size = min_size + extra
    assume(min(h, w) * max_size >= max(h, w))  # else the shorter side resizes to 0 px
    size = da.resized_size((h, w), min_size, max_size)
    # The size torchvision computes (interpolate with recompute_scale_factor=True).
    scale = min(min_size / min(h, w), max_size / max(h, w))
    ref = F.interpolate(torch.zeros(1, 1, h, w), scale_factor=scale, mode="bilinear",
                        recompute_scale_factor=True, align_corners=False).shape[-2:]
    assert size == tuple(ref)
    assert min(size) <= min_size and max(size) <= max_size
    boxes = _random_boxes(np.random.default_rng(seed), 8, h, w)
    resized = da.resize_boxes(boxes, (h, w), size)
    back = da.postprocess_boxes(resized, size, (h, w))
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-3)


@FEW
@given(h=st.integers(1, 48), w=st.integers(1, 48), min_size=st.integers(8, 64),
       extra=st.integers(0, 64), seed=st.integers(0, 2**31 - 1))
def test_eval_transform_round_trip_on_small_images(h, w, min_size, extra, seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 4, h, w)
    ex = {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "boxes": boxes}
    assume(min(h, w) * (min_size + extra) >= max(h, w))
    t = da.eval_transform(min_size, min_size + extra)
    out = t(ex)
    assert out["image"].shape == (*t.canvas, 3) and t.canvas[0] % 32 == 0
    back = da.postprocess_boxes(out["boxes"], out["image_size"], out["orig_size"])
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-3)


def test_eval_transform_canvas_and_errors():
    assert da.eval_transform(800, 1333).canvas == (1344, 1344)
    assert da.eval_transform(520, None, canvas=(520, 1040)).canvas == (520, 1040)
    with pytest.raises(ValueError, match=r"resizes to the empty size \(0, 16\)"):
        da.resized_size((1, 17), 16, 16)
    with pytest.raises(ValueError, match="give a canvas"):
        da.eval_transform(520, None)
    with pytest.raises(ValueError, match=r"image_id 7\) resizes to \(64, 128\), larger than"):
        da.eval_transform(64, 200, canvas=(64, 64))(
            {"image": np.zeros((10, 20, 3), np.uint8), "image_id": 7})
    # A semantic mask rides along, padded with ignore_index.
    out = da.eval_transform(8, 16, canvas=(32, 32))(
        {"image": np.zeros((4, 8, 3), np.uint8), "mask": np.ones((4, 8), np.uint8)})
    assert tuple(out["image_size"]) == (8, 16)
    assert (out["mask"][:8, :16] == 1).all() and (out["mask"][8:] == 255).all()


# ---- training: parameters drawn once, boxes and masks follow the image ------------------

transform_args = st.fixed_dictionaries({
    "canvas": st.tuples(st.integers(16, 72), st.integers(16, 72)),
    "flip": st.booleans(),
    "crop": st.booleans(),
    "lo": st.floats(0.3, 1.0),
    "span": st.floats(0.0, 1.5),
    "min_box_size": st.sampled_from([0.0, 1.0, 3.0]),
})


def _make(args: dict) -> da.TrainTransform:
    lo = args["lo"]
    hi = min(lo + args["span"], 1.0) if not args["crop"] else lo + args["span"]
    return da.train_transform(args["canvas"], (lo, hi), flip=args["flip"], crop=args["crop"],
                              min_box_size=args["min_box_size"])


def _grid_boxes(rng: np.random.Generator, h: int, w: int, n: int = 3) -> np.ndarray:
    """[n * n, 4] integer-cornered boxes, one inside each cell of an n x n grid (never
    overlapping), each at least 1 px wide and high."""
    ys, xs = np.linspace(0, h, n + 1).astype(int), np.linspace(0, w, n + 1).astype(int)
    out = []
    for r in range(n):
        for c in range(n):
            x1 = rng.integers(xs[c], xs[c + 1] - 1, endpoint=True)
            y1 = rng.integers(ys[r], ys[r + 1] - 1, endpoint=True)
            x2 = rng.integers(x1 + 1, xs[c + 1], endpoint=True)
            y2 = rng.integers(y1 + 1, ys[r + 1], endpoint=True)
            out.append((x1, y1, x2, y2))
    return np.array(out, np.float32)


def _expected_window_boxes(boxes: np.ndarray, w: int, h: int, p: da.AugmentParams):
    """The boxes in canvas pixels, from the drawn parameters, in float64: (clipped boxes,
    intersection width, intersection height)."""
    b = boxes.astype(np.float64)
    if p.flip:
        b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
    (nh, nw), (ch, cw) = p.resized, p.crop_size
    b = b * np.array([nw / w, nh / h] * 2) - np.array([p.left, p.top] * 2)
    iw = np.minimum(b[:, 2], cw) - np.maximum(b[:, 0], 0)
    ih = np.minimum(b[:, 3], ch) - np.maximum(b[:, 1], 0)
    return np.clip(b, 0, [cw, ch, cw, ch]), iw, ih


@FEW
@given(args=transform_args, h=st.integers(12, 64), w=st.integers(12, 64),
       seed=st.integers(0, 2**31 - 1))
def test_boxes_and_instance_masks_follow_the_image(args, h, w, seed):
    t = _make(args)
    rng = np.random.default_rng(seed)
    boxes = np.concatenate([_grid_boxes(rng, h, w), np.zeros((2, 4), np.float32)])  # + padding
    k = len(boxes)
    valid = np.arange(k) < 9
    colours = rng.permutation(np.arange(40, 250))[:3 * k].reshape(k, 3).astype(np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    masks = np.zeros((k, h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:9].astype(int)):
        image[y1:y2, x1:x2] = colours[i]
        masks[i, y1:y2, x1:x2] = 1
    labels = np.where(valid, np.arange(1, k + 1), 0).astype(np.int32)
    ex = {"image": image, "boxes": boxes, "box_valid": valid, "labels": labels,
          "difficult": valid.copy(), "masks": masks, "image_id": np.int64(3), "extra": "kept"}

    out = t(ex, np.random.default_rng(seed))
    p = t.sample((h, w), np.random.default_rng(seed))
    hc, wc = t.canvas
    (ch, cw), (nh, nw) = p.crop_size, p.resized
    assert out["image"].shape == (hc, wc, 3) and out["image"].dtype == np.uint8
    assert out["masks"].shape == (k, hc, wc) and out["boxes"].dtype == np.float32
    assert tuple(out["image_size"]) == (ch, cw) and ch <= hc and cw <= wc
    assert out["extra"] == "kept" and out["image_id"] == 3
    np.testing.assert_array_equal(out["orig_size"], (h, w))
    assert not out["image"][ch:].any() and not out["image"][:, cw:].any()

    # Which boxes survive, and where they are, from the parameters (float64, intersections).
    want, iw, ih = _expected_window_boxes(boxes, w, h, p)
    m = t.min_box_size
    keep = valid & (iw >= m) & (ih >= m) & (iw > 0) & (ih > 0)
    clear = (np.abs(iw - m) > 1e-3) & (np.abs(ih - m) > 1e-3) & (np.abs(iw) > 1e-3) \
        & (np.abs(ih) > 1e-3)
    np.testing.assert_array_equal(out["box_valid"][clear], keep[clear])
    got = out["box_valid"]
    np.testing.assert_allclose(out["boxes"][got], want[got], rtol=0, atol=1e-3)
    for name in ("boxes", "labels", "difficult", "masks"):
        assert not out[name][~got].any(), name  # dropped rows zeroed
    np.testing.assert_array_equal(out["labels"][got], labels[got])
    b = out["boxes"][got]
    assert (b >= 0).all() and (b[:, [0, 2]] <= cw).all() and (b[:, [1, 3]] <= ch).all()
    assert (b[:, 2] - b[:, 0] >= m).all() and (b[:, 3] - b[:, 1] >= m).all()

    # Pixels well inside each kept box have its colour: a bilinear tap reaches half a source
    # pixel, i.e. 0.5 * zoom canvas pixels, across the box's edge.
    cy = np.arange(hc)[:, None] + 0.5
    cx = np.arange(wc)[None, :] + 0.5
    my, mx = 0.5 * nh / h + 1e-3, 0.5 * nw / w + 1e-3
    for i in np.flatnonzero(got):
        x1, y1, x2, y2 = out["boxes"][i]
        inner = (cx >= x1 + mx) & (cx <= x2 - mx) & (cy >= y1 + my) & (cy <= y2 - my)
        assert (out["image"][inner] == colours[i]).all(), i
        # Instance masks (nearest) cover exactly the box: every pixel centre inside it, none
        # outside.
        inside = (cx > x1 + 1e-3) & (cx < x2 - 1e-3) & (cy > y1 + 1e-3) & (cy < y2 - 1e-3)
        near = (cx > x1 - 1e-3) & (cx < x2 + 1e-3) & (cy > y1 - 1e-3) & (cy < y2 + 1e-3)
        assert out["masks"][i][inside].all() and not out["masks"][i][~near].any(), i


def _blocky_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """[h, w] uint8 labels in {0..5, 255} in random rectangular blocks (so interiors exist)."""
    by, bx = rng.integers(1, 5), rng.integers(1, 5)
    labels = rng.choice(np.array([0, 1, 2, 3, 4, 5, 255], np.uint8), (by, bx))
    ry = np.sort(rng.choice(np.arange(1, h), by - 1, replace=False)) if by > 1 else []
    rx = np.sort(rng.choice(np.arange(1, w), bx - 1, replace=False)) if bx > 1 else []
    rows = np.searchsorted(ry, np.arange(h), side="right")
    cols = np.searchsorted(rx, np.arange(w), side="right")
    return labels[rows[:, None], cols[None, :]]


def _interior(mask: np.ndarray) -> np.ndarray:
    """[h, w] uint8, 1 where the 3x3 neighbourhood (edges replicated) has one label."""
    p = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    same = np.ones(mask.shape, bool)
    for dy in range(3):
        for dx in range(3):
            same &= p[dy:dy + h, dx:dx + w] == mask
    return same.astype(np.uint8)


@FEW
@given(args=transform_args, h=st.integers(8, 64), w=st.integers(8, 64),
       seed=st.integers(0, 2**31 - 1))
def test_segmentation_mask_follows_the_image(args, h, w, seed):
    t = _make(args)
    rng = np.random.default_rng(seed)
    mask = _blocky_mask(rng, h, w)
    palette = rng.permutation(np.arange(1, 256))[:3 * 256].reshape(-1, 3)
    palette = np.resize(palette, (256, 3)).astype(np.uint8)
    palette[[0, 1, 2, 3, 4, 5, 255]] = rng.permutation(np.arange(10, 250, 10))[:21].reshape(7, 3)
    image = palette[mask]

    out = t({"image": image, "mask": mask}, np.random.default_rng(seed))
    # The same seed draws the same parameters: the interior map goes where the mask went.
    where = t({"image": image, "mask": _interior(mask)}, np.random.default_rng(seed))["mask"]
    assert set(out) == {"image", "mask", "image_size", "orig_size"}  # no boxes invented
    ch, cw = out["image_size"]
    assert (out["mask"][ch:] == 255).all() and (out["mask"][:, cw:] == 255).all()
    assert set(np.unique(out["mask"][:ch, :cw])) <= set(np.unique(mask))
    # A pixel whose nearest source pixel is 1 px inside its region has the region's colour
    # exactly: both bilinear taps of each axis lie within 1 px of the nearest one.
    inner = where[:ch, :cw] == 1
    np.testing.assert_array_equal(out["image"][:ch, :cw][inner],
                                  palette[out["mask"][:ch, :cw][inner]])


@FEW
@given(args=transform_args, seed=st.integers(0, 2**31 - 1))
def test_same_seed_same_output(args, seed):
    t = _make(args)
    rng = np.random.default_rng(0)
    ex = {"image": rng.integers(0, 256, (30, 41, 3), dtype=np.uint8),
          "boxes": _grid_boxes(rng, 30, 41, 2), "mask": _blocky_mask(rng, 30, 41)}
    a = t(ex, np.random.default_rng(seed))
    b = pickle.loads(pickle.dumps(t))(ex, np.random.default_rng(seed))  # as in a worker
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_parameters_vary_and_follow_the_configuration():
    t = da.train_transform((40, 60), scale_range=(0.5, 2.0))
    params = [t.sample((30, 90), np.random.default_rng(s)) for s in range(40)]
    assert len({(p.flip, p.resized, p.top, p.left) for p in params}) > 30
    assert {p.flip for p in params} == {False, True}
    # Scale 1 fits the whole image into the canvas (large-scale jitter's base scale).
    p = da.train_transform((40, 60), (1.0, 1.0), flip=False).sample((30, 90),
                                                                    np.random.default_rng(0))
    assert p == da.AugmentParams(False, (20, 60), 0, 0, (20, 60))
    # base_size: the shorter side at scale 1 (torchvision's segmentation recipe), then crop.
    p = da.train_transform((16, 16), (1.0, 1.0), base_size=20).sample(
        (30, 40), np.random.default_rng(0))
    assert p.resized == (20, 27) and p.crop_size == (16, 16)
    assert 0 <= p.top <= 4 and 0 <= p.left <= 11


def test_train_transform_errors_name_the_problem():
    with pytest.raises(ValueError, match="crop=False needs every resized image to fit"):
        da.train_transform((32, 32), (0.5, 2.0), crop=False)
    with pytest.raises(ValueError, match="scale_range must be"):
        da.train_transform((32, 32), (0.0, 1.0))
    with pytest.raises(ValueError, match="canvas must be an int >= 1"):
        da.train_transform((0, 32))
    t = da.train_transform((32, 32))
    image = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=r"'mask' must be \[H, W\] = \(10, 12\).*image_id 5"):
        t({"image": image, "mask": np.zeros((10, 11), np.uint8), "image_id": 5},
          np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"'masks' must be \[K, H, W\]"):
        t({"image": image, "boxes": np.zeros((2, 4), np.float32),
           "masks": np.zeros((3, 10, 12), np.uint8)}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no 'image' field"):
        t({"mask": np.zeros((4, 4), np.uint8)}, np.random.default_rng(0))


class _VariableSizeSource:
    """Dense examples of different image sizes (what VOC/COCO sources return)."""

    def __init__(self, sizes: list[tuple[int, int]]):
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> dict:
        h, w = self.sizes[i]
        rng = np.random.default_rng(i)
        boxes = np.zeros((5, 4), np.float32)
        boxes[:4] = _grid_boxes(rng, h, w, 2)
        return {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "boxes": boxes,
                "labels": np.array([1, 2, 3, 4, 0], np.int32),
                "box_valid": np.arange(5) < 4, "image_id": np.int64(i),
                "orig_size": np.array([h, w], np.int32)}


@pytest.mark.parametrize("make", [lambda: da.train_transform((48, 64)),
                                  lambda: da.eval_transform(32, 60, canvas=(64, 64))])
def test_transforms_give_static_batches_through_the_loader(make):
    from jaxvision.data import DataLoader

    src = _VariableSizeSource([(30, 41), (50, 20), (17, 64), (40, 40)])
    batches = [list(DataLoader(src, 2, shuffle=False, num_epochs=1, shard_index=0,
                               shard_count=1, transform=make())) for _ in range(2)]
    assert len(batches[0]) == 2
    for a, b in zip(*batches, strict=True):
        assert a["image"].shape[1:] == (*make().canvas, 3) and a["boxes"].shape == (2, 5, 4)
        assert a["image_size"].shape == (2, 2) and a["orig_size"].shape == (2, 2)
        for key in a:  # the loader's per-example rngs make the draws reproducible
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
