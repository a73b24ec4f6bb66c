"""jaxvision.detection.faster_rcnn (+ rpn, roi_heads, inference) against torchvision's models.

Both detectors are built in torchvision with random weights (BatchNorms given realistic
statistics), their RPN and box-predictor layers rescaled so that objectness logits, box
deltas and class scores are moderate (random heads otherwise give no score above the 0.05
threshold, or saturated ones), converted with ``convert_torchvision`` and run on real photos
of odd sizes in one batch. Stage by stage (transform, FPN, RPN head, proposals, box head)
and end to end, the outputs must equal torchvision's.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import box_iou

import jaxvision.models
from jaxvision.detection import detect
from jaxvision.detection.faster_rcnn import upgrade_state_dict
from jaxvision.detection.inference import forward, preprocess
from jaxvision.weights import convert_torchvision
from jaxvision.weights.hub import COCO_CATEGORIES, DETECTION_WEIGHTS
from tests.torch_parity import realistic_batchnorm

# Small images keep the suite fast; few proposals keep the box heads cheap.
CONFIG = {"min_size": 288, "max_size": 448, "rpn_post_nms_top_n_test": 200}
MODELS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"]


def _photos(shared_data) -> list[np.ndarray]:
    root = shared_data / "photos"
    if not root.is_dir():
        pytest.skip(f"photos not found under {shared_data}")
    chelsea = np.asarray(Image.open(root / "chelsea.png").convert("RGB"), np.float32) / 255
    coffee = np.asarray(Image.open(root / "coffee.png").convert("RGB"), np.float32) / 255
    # Odd sizes, two aspect ratios: 300x451 and 301x417 -> 288x432 and 288x398 on a
    # 288x448 canvas.
    return [chelsea, coffee[:301, :417]]


def _rescale(layer: torch.nn.Module, target_std: float, out: torch.Tensor) -> float:
    s = target_std / out.std().item()
    layer.weight.mul_(s)
    layer.bias.mul_(s)
    return s


def spread_head_scores(tv: torch.nn.Module, images: list[torch.Tensor]) -> tuple:
    """Rescales (in place) the output layers of a random torchvision detector's RPN and box
    predictor so that on ``images`` their outputs spread as a trained model's do: objectness
    logits and class logits with std 2 and 3 (the pre- and post-nms top-k cuts then fall
    between clearly different scores, and detections score over (0, 1) without saturating),
    deltas with std 0.2 and 1. Random heads give no detection above the 0.05 threshold.

    Returns ``(image_list, features, objectness [N * A, 1], deltas [N * A, 4], proposals)``
    of the rescaled model on ``images``.
    """
    with torch.no_grad():
        image_list, _ = tv.transform(images)
        feats = tv.backbone(image_list.tensors)
        obj, dl = concat_box_prediction_layers(*tv.rpn.head(list(feats.values())))
        # Rescaling a final layer scales its outputs: no second pass needed for those.
        obj = obj * _rescale(tv.rpn.head.cls_logits, 2.0, obj)
        dl = dl * _rescale(tv.rpn.head.bbox_pred, 0.2, dl)
        props, _ = tv.rpn(image_list, feats)
        few = [p[:32] for p in props]  # enough RoIs to set the box predictor's scale
        x = tv.roi_heads.box_head(tv.roi_heads.box_roi_pool(feats, few, image_list.image_sizes))
        logits, regression = tv.roi_heads.box_predictor(x)
        _rescale(tv.roi_heads.box_predictor.cls_score, 3.0, logits)
        _rescale(tv.roi_heads.box_predictor.bbox_pred, 1.0, regression)
    return image_list, feats, obj, dl, props


@pytest.fixture(scope="module", params=MODELS)
def case(request, shared_data):
    """torchvision's and jaxvision's outputs of one model on the photos, every stage."""
    name = request.param
    images = _photos(shared_data)
    torch.manual_seed(0)
    tv = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None,
                                                     **CONFIG)
    realistic_batchnorm(tv).eval()
    timages = [torch.from_numpy(x).permute(2, 0, 1) for x in images]
    n = len(images)
    image_list, feats, obj, dl, props = spread_head_scores(tv, timages)
    with torch.no_grad():
        dets, _ = tv.roi_heads(feats, props, image_list.image_sizes)
        dets = tv.transform.postprocess(dets, image_list.image_sizes,
                                        [x.shape[:2] for x in images])

    model = jaxvision.models.get_model(name, **CONFIG)
    variables = convert_torchvision(name, tv.state_dict())
    batch, sizes, _ = preprocess(images, model.min_size, model.max_size, model.image_mean,
                                 model.image_std)
    stages = forward(model, variables, batch, sizes)
    return {"name": name, "tv": tv, "model": model, "variables": variables, "images": images,
            "image_list": image_list, "batch": batch, "sizes": sizes, "feats": feats,
            "objectness": obj.reshape(n, -1).numpy(), "deltas": dl.reshape(n, -1, 4).numpy(),
            "proposals": props, "detections": dets, "stages": stages,
            "ours": detect(model, variables, images)}


def test_parameter_count(case):
    # torchvision's published counts; the v1 model's frozen BatchNorm affine parameters are
    # buffers there (FrozenBatchNorm2d) and variables here.
    leaves = _param_paths(case["variables"]["params"])
    total = sum(v.size for v in leaves.values())
    assert total == sum(p.numel() for p in case["tv"].parameters())
    frozen = sum(v.size for k, v in leaves.items() if k.startswith("backbone/body/")
                 and ("/bn" in k or "downsample.1" in k)) if case["name"].endswith("fpn") else 0
    assert total - frozen == DETECTION_WEIGHTS[case["name"]].num_params


def _param_paths(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        out.update(_param_paths(v, path + "/") if isinstance(v, dict) else {path: np.asarray(v)})
    return out


def test_transform_matches_torchvision(case):
    tensors = case["image_list"].tensors.permute(0, 2, 3, 1).numpy()
    assert case["batch"].shape == tensors.shape  # the canvas: batch max rounded up to 32
    assert [tuple(s) for s in case["sizes"]] == list(case["image_list"].image_sizes)
    np.testing.assert_allclose(case["batch"], tensors, atol=1e-5)


def test_fpn_features(case):
    for name, t in case["feats"].items():
        ref = t.permute(0, 2, 3, 1).numpy()
        got = np.asarray(case["stages"]["features"][name])
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), name


def test_rpn_head_outputs(case):
    rpn = case["stages"]["rpn"]
    np.testing.assert_allclose(np.asarray(rpn.objectness), case["objectness"], atol=1e-4 * max(
        1.0, np.abs(case["objectness"]).max()))
    np.testing.assert_allclose(np.asarray(rpn.pred_bbox_deltas), case["deltas"], atol=1e-4)


def test_proposals(case):
    rpn = case["stages"]["rpn"]
    for i, ref in enumerate(case["proposals"]):
        got = np.asarray(rpn.proposals[i])[np.asarray(rpn.valid[i])]
        assert got.shape == tuple(ref.shape)
        # Near-equal objectness (within float noise) may swap neighbours: compare as sets.
        iou = box_iou(ref, torch.from_numpy(got)).numpy()
        assert (iou.max(axis=1) >= 0.999).mean() >= 0.99
        scores = np.asarray(rpn.scores[i])[np.asarray(rpn.valid[i])]
        assert np.all(np.diff(scores) <= 0)


def test_box_head_outputs(case):
    """Class logits and box deltas of our proposals, from both box heads."""
    tv, stages = case["tv"], case["stages"]
    rpn = stages["rpn"]
    for i in range(len(case["images"])):
        valid = np.asarray(rpn.valid[i])
        boxes = torch.from_numpy(np.asarray(rpn.proposals[i])[valid])
        feats = {k: v[i:i + 1] for k, v in case["feats"].items()}
        with torch.no_grad():
            x = tv.roi_heads.box_roi_pool(feats, [boxes], case["image_list"].image_sizes[i:i + 1])
            logits, deltas = tv.roi_heads.box_predictor(tv.roi_heads.box_head(x))
        got_l = np.asarray(stages["class_logits"][i])[valid]
        got_d = np.asarray(stages["box_regression"][i])[valid]
        np.testing.assert_allclose(got_l, logits.numpy(), atol=1e-4 * np.abs(logits).max().item())
        np.testing.assert_allclose(got_d, deltas.numpy(), atol=1e-4 * np.abs(deltas).max().item())


def test_detections_equal_torchvision(case):
    for ref, got in zip(case["detections"], case["ours"], strict=True):
        assert len(got["boxes"]) == len(ref["boxes"])
        scores = ref["scores"].numpy()
        # Heads with moderate scores: detections spread over (0.05, 1), not saturated.
        assert scores.max() < 0.99 and len(scores) > 10
        assert got["labels"].dtype == np.int64 and got["boxes"].shape[1:] == (4,)
        iou = box_iou(ref["boxes"], torch.from_numpy(got["boxes"])).numpy()
        same = ((ref["labels"].numpy()[:, None] == got["labels"][None, :]) & (iou >= 0.99)
                & (np.abs(scores[:, None] - got["scores"][None, :]) <= 1e-3))
        assert same.any(axis=1).mean() >= 0.99


def test_old_rpn_keys_are_upgraded():
    sd = {"rpn.head.conv.weight": np.zeros((256, 256, 3, 3)), "rpn.head.conv.bias": np.zeros(256),
          "roi_heads.box_predictor.cls_score.weight": np.zeros((91, 1024))}
    out = upgrade_state_dict(sd)
    assert set(out) == {"rpn.head.conv.0.0.weight", "rpn.head.conv.0.0.bias",
                        "roi_heads.box_predictor.cls_score.weight"}


def test_weights_metadata_match_torchvision():
    from torchvision.models.detection import (
        FasterRCNN_ResNet50_FPN_V2_Weights,
        FasterRCNN_ResNet50_FPN_Weights,
    )

    for name, enum in (("fasterrcnn_resnet50_fpn", FasterRCNN_ResNet50_FPN_Weights.COCO_V1),
                       ("fasterrcnn_resnet50_fpn_v2",
                        FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1)):
        info = DETECTION_WEIGHTS[name]
        assert info.url == enum.url
        assert info.num_params == enum.meta["num_params"]
        assert info.box_map == enum.meta["_metrics"]["COCO-val2017"]["box_map"]
        assert info.categories == tuple(enum.meta["categories"]) == COCO_CATEGORIES
        assert info.hash_prefix and info.hash_prefix in enum.url


def test_builder_defaults_and_bad_input():
    model = jaxvision.models.get_model("fasterrcnn_resnet50_fpn")
    assert (model.num_classes, model.min_size, model.max_size) == (91, 800, 1333)
    assert model.rpn.pre_nms_top_n_test == model.rpn.post_nms_top_n_test == 1000
    assert model.rpn.nms_thresh == 0.7
    assert (model.roi_heads.score_thresh, model.roi_heads.nms_thresh,
            model.roi_heads.detections_per_img) == (0.05, 0.5, 100)
    assert model.backbone.trainable_layers == 3
    with pytest.raises(TypeError, match="rpn_nms_threshold"):
        jaxvision.models.get_model("fasterrcnn_resnet50_fpn", rpn_nms_threshold=0.5)
    with pytest.raises(ValueError, match=r"images\[1\].*\[H, W, 3\]"):
        detect(model, {}, [np.zeros((40, 50, 3), np.float32), np.zeros((40, 50, 4), np.float32)])
    with pytest.raises(ValueError, match="float in"):
        detect(model, {}, [np.zeros((40, 50, 3), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        detect(model, {}, [])


def test_frozen_bn_eps_zero_as_the_coco_v1_weights():
    """torchvision loads the v1 COCO_V1 weights with ``overwrite_eps(model, 0.0)``."""
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    from jaxvision.models.backbone import resnet_fpn_backbone
    from jaxvision.weights.convert import convert_state_dict

    torch.manual_seed(0)
    tv = tv_backbone(backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d,
                     trainable_layers=3).eval()
    g = torch.Generator().manual_seed(0)
    for m in tv.modules():
        if isinstance(m, FrozenBatchNorm2d):  # small variances: eps 1e-5 would matter
            c = m.weight.numel()
            var = 1e-4 + 1e-3 * torch.rand(c, generator=g)
            m.running_var.copy_(var)
            m.weight.copy_(var.sqrt() * (0.5 + torch.rand(c, generator=g)))  # scale ~1
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref_default = tv(x)["0"].numpy()
        overwrite_eps(tv, 0.0)
        ref = tv(x)["0"]
    ref = ref.permute(0, 2, 3, 1).numpy()
    assert np.abs(ref - ref_default.transpose(0, 2, 3, 1)).max() > 1e-3 * np.abs(ref).max()
    ours = resnet_fpn_backbone("resnet50", frozen_bn_eps=0.0)
    variables = convert_state_dict(ours, tv.state_dict())
    got = np.asarray(jax.jit(ours.apply)(variables, x.permute(0, 2, 3, 1).numpy())["0"])
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
