"""jaxvision.detection.FasterRCNN.losses against torchvision's training-mode forward.

torchvision's ``GeneralizedRCNN.forward(images, targets)`` samples anchors and RoIs at random
(``torch.randperm``), jaxvision with its own keys: the streams cannot match. Both samplers
are deterministic when everything eligible is sampled, so the models are built with
``rpn_batch_size_per_image`` above the number of anchors, ``box_batch_size_per_image`` above
the proposals plus ground truth and both positive fractions 1.0: every labelled anchor and
RoI is then sampled, and the four losses and every trainable parameter's gradient must equal
torchvision's. torchvision's detector is the composition its builder makes for pretrained
weights (ResNet-50 with ``FrozenBatchNorm2d``, ``trainable_layers=3``), with random weights,
realistic frozen statistics and heads rescaled to moderate outputs, as in
``test_faster_rcnn.py``; both get torchvision's own resized, normalized batch.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
import torch
import torchvision
from flax import traverse_util
from torchvision.models.detection import FasterRCNN as TorchFasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

import jaxvision.models
from jaxvision.detection.faster_rcnn import FasterRCNN
from jaxvision.weights import convert_torchvision
from jaxvision.weights.convert import torch_to_flax, variable_shapes
from tests.detection.test_faster_rcnn import _photos, spread_head_scores
from tests.torch_parity import layer_rel_err

NAME = "fasterrcnn_resnet50_fpn"
# The photos (300x451, 301x417) -> 128x192 and 128x177 on a 128x192 canvas: 6,138 anchors,
# all sampled (10,000 >= 6,138); 64 proposals + <= 4 gt boxes all sampled (80 RoIs). Small
# sizes keep the one compile (value_and_grad through ResNet-50) and each step short.
CONFIG = {"num_classes": 4, "min_size": 128, "max_size": 224,
          "rpn_pre_nms_top_n_train": 500, "rpn_post_nms_top_n_train": 64,
          "rpn_batch_size_per_image": 10_000, "rpn_positive_fraction": 1.0,
          "box_batch_size_per_image": 80, "box_positive_fraction": 1.0}
LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
G = 4  # padded ground-truth rows per image

# Hand-placed boxes (x1, y1, x2, y2) in the photos' pixels: the cat, its paw, the remote; the
# cup. 55-115 px after resizing, near the anchors' sizes: positive anchors and foreground RoIs
# in both images.
BOXES = [np.array([[110, 30, 320, 280], [20, 150, 150, 290], [300, 60, 440, 200]], np.float32),
         np.array([[60, 40, 330, 260]], np.float32)]
LABELS = [np.array([1, 3, 2]), np.array([2])]


def _realistic_frozen_batchnorm(model: torch.nn.Module) -> None:
    # tests.torch_parity.realistic_batchnorm's values, for FrozenBatchNorm2d (not a _BatchNorm).
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            c = m.weight.numel()
            m.weight.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.copy_(0.2 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def _torch_model(images: list[torch.Tensor]) -> torch.nn.Module:
    torch.manual_seed(0)
    body = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
    tv_config = {k: v for k, v in CONFIG.items() if k != "num_classes"}
    tv = TorchFasterRCNN(_resnet_fpn_extractor(body, 3), num_classes=CONFIG["num_classes"],
                         **tv_config).eval()
    with torch.no_grad():
        _realistic_frozen_batchnorm(tv)
    spread_head_scores(tv, images)
    return tv.train()


def _torch_step(tv: torch.nn.Module, images: list[torch.Tensor],
                targets: list[dict[str, torch.Tensor]]) -> dict:
    """torchvision's training forward and backward: losses, gradients, sampled RoI labels."""
    record = {}
    select = type(tv.roi_heads).select_training_samples

    def recording_select(proposals, targets):
        out = select(tv.roi_heads, proposals, targets)
        record["labels"] = [x.clone() for x in out[2]]
        return out

    tv.zero_grad()
    tv.roi_heads.select_training_samples = recording_select
    try:
        losses = tv(images, targets)
    finally:
        del tv.roi_heads.select_training_samples
    sum(losses.values()).backward()
    grads = {k: p.grad for k, p in tv.named_parameters() if p.grad is not None}
    return {"losses": {k: v.item() for k, v in losses.items()}, "grads": grads,
            "roi_labels": record["labels"]}


def _padded(targets: list[dict[str, torch.Tensor]], junk: bool) -> tuple[np.ndarray, ...]:
    """The resized targets as ``[N, G, 4]`` boxes, ``[N, G]`` labels and validity; padding
    rows hold zeros, or with ``junk`` boxes and labels that must be ignored."""
    n = len(targets)
    boxes = np.zeros((n, G, 4), np.float32)
    labels = np.zeros((n, G), np.int32)
    valid = np.zeros((n, G), bool)
    rng = np.random.default_rng(1)
    for i, t in enumerate(targets):
        k = len(t["boxes"])
        boxes[i, :k] = t["boxes"].numpy()
        labels[i, :k] = t["labels"].numpy()
        valid[i, :k] = True
        if junk:
            # Overlapping real objects, degenerate, inverted and far outside the canvas.
            junk_boxes = np.array([[50, 40, 200, 170], [5, 5, 5, 5], [90, 80, 10, 20],
                                   [-1e4, -50, 1e4, 3e3]], np.float32)
            boxes[i, k:] = junk_boxes[:G - k] + rng.uniform(0, 3, (G - k, 4))
            labels[i, k:] = rng.integers(1, CONFIG["num_classes"], G - k)
    return boxes, labels, valid


def _total(params, rest, images, sizes, boxes, labels, valid, key, *, model):
    out = model.apply({**rest, "params": params}, images, sizes, boxes, labels, valid, key,
                      method=FasterRCNN.losses)
    return sum(out[k] for k in LOSSES), out


@pytest.fixture(scope="module")
def setup(shared_data):
    photos = _photos(shared_data)
    images = [torch.from_numpy(x).permute(2, 0, 1) for x in photos]
    tv = _torch_model(images)
    model = jaxvision.models.get_model(NAME, **CONFIG)
    variables = convert_torchvision(NAME, tv.state_dict(), **CONFIG)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    # Everything an argument (no closed-over arrays: XLA would constant-fold the backbone).
    step = jax.jit(jax.value_and_grad(lambda *a: _total(*a, model=model), has_aux=True))
    template = {"params": variable_shapes(model)["params"]}

    def ours(targets, *, junk: bool = True, seed: int = 0) -> dict:
        """jaxvision's losses and gradients (``"a/b/kernel"`` keys) on torchvision's batch."""
        image_list, resized = tv.transform(images, targets)
        batch = image_list.tensors.permute(0, 2, 3, 1).numpy()
        sizes = np.asarray(image_list.image_sizes, np.int32)
        (_, out), grads = step(params, rest, batch, sizes, *_padded(resized, junk),
                               jax.random.key(seed))
        return {"losses": {k: float(v) for k, v in out.items()},
                "grads": traverse_util.flatten_dict(grads, sep="/")}

    def theirs(targets) -> dict:
        """torchvision's losses and gradients, the latter converted to our layout and keys."""
        ref = _torch_step(tv, images, targets)
        converted = torch_to_flax(template, ref["grads"], model.torch_flatten_shapes,
                                  strict=False)
        ref["grads"] = traverse_util.flatten_dict(converted["params"], sep="/")
        return ref

    return {"model": model, "ours": ours, "theirs": theirs}


def _targets(boxes=BOXES, labels=LABELS) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.from_numpy(b).reshape(-1, 4), "labels": torch.from_numpy(c)}
            for b, c in zip(boxes, labels, strict=True)]


@pytest.fixture(scope="module")
def both(setup):
    return setup["ours"](_targets()), setup["theirs"](_targets())


def _assert_losses_equal(ours: dict, ref: dict) -> None:
    for k in LOSSES:
        assert np.isfinite(ours["losses"][k]), k
        assert ours["losses"][k] == pytest.approx(ref["losses"][k], rel=1e-4, abs=1e-7), k
    # The same RoIs were sampled: torchvision's foreground count per image, averaged.
    fg = np.mean([(x > 0).sum().item() for x in ref["roi_labels"]])
    assert ours["losses"]["num_fg_rois"] == fg


def test_torchvision_samples_everything(both):
    """The premise: torchvision's sampler kept every labelled RoI (none was left to chance)."""
    _, ref = both
    for labels, gt in zip(ref["roi_labels"], BOXES, strict=True):
        # All proposals and gt boxes; -1 (between thresholds) never exists at 0.5 / 0.5.
        assert len(labels) == CONFIG["rpn_post_nms_top_n_train"] + len(gt)
        assert bool((labels >= 0).all())


def test_losses_equal_torchvision(both):
    ours, ref = both
    _assert_losses_equal(ours, ref)
    # Not degenerate: foreground RoIs in both images, every loss non-trivial.
    assert ours["losses"]["num_fg_rois"] >= 2
    assert min(ref["losses"].values()) > 1e-5


def _grad_error(ours: dict, ref: dict, prefix: str = "") -> float:
    """Max over torch's trainable layers under ``prefix`` of the relative gradient error."""
    keys = [k for k in ref["grads"] if k.startswith(prefix)]
    assert keys, prefix
    tree = lambda g: traverse_util.unflatten_dict({k: g[k] for k in keys}, sep="/")  # noqa: E731
    return layer_rel_err(tree(ours["grads"]), tree(ref["grads"]))


def test_gradients_equal_torchvision(setup, both):
    ours, ref = both
    # torch computes gradients exactly for what trainable_layers=3 leaves trainable (layer2
    # on, FPN, heads); the engine freezes our other parameters with frozen_patterns().
    frozen = [re.compile(p) for p in setup["model"].frozen_patterns()]
    trainable = {k for k in ours["grads"] if not any(p.search(k) for p in frozen)}
    assert set(ref["grads"]) == trainable
    # Measured: <= 1.3e-4 (torch's own channels-last gradients differ from its contiguous
    # ones by up to 3.6e-4 here).
    for prefix in ("rpn/", "roi_heads/box_predictor/", "roi_heads/box_head/", "backbone/fpn/",
                   "backbone/body/"):
        assert _grad_error(ours, ref, prefix) <= 1e-3, prefix


def test_padding_rows_and_key_change_nothing(setup, both):
    ours, _ = both
    other = setup["ours"](_targets(), junk=False, seed=7)
    for k in (*LOSSES, "num_fg_rois"):
        assert other["losses"][k] == pytest.approx(ours["losses"][k], rel=1e-6), k
    for k, g in ours["grads"].items():
        np.testing.assert_allclose(other["grads"][k], g, rtol=1e-5,
                                   atol=1e-6 * float(np.abs(g).max()), err_msg=k)


def test_image_without_boxes_equals_torchvision(setup):
    """An image without objects (torchvision's ``boxes`` of shape [0, 4]): all background."""
    empty = _targets([BOXES[0], np.zeros((0, 4), np.float32)],
                     [LABELS[0], np.zeros((0,), np.int64)])
    ours, ref = setup["ours"](empty), setup["theirs"](empty)
    background = ref["roi_labels"][1]
    assert len(background) == CONFIG["rpn_post_nms_top_n_train"] and not background.any()
    _assert_losses_equal(ours, ref)
    assert _grad_error(ours, ref) <= 1e-3
