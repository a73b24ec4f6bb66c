"""VOC AP on hand-worked cases and against the classic ``voc_eval`` loop; COCO AP against
pycocotools' ``COCOeval`` on the real coco128 annotations."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxvision.data.voc import parse_voc_xml, read_split
from jaxvision.detection import COCOEvaluator, VOCEvaluator, coco_results, voc_ap, voc_iou

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

A, B, D = [0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]  # disjoint boxes
FAR = [100, 100, 110, 110]  # overlaps nothing


def _ap(dets, gts, difficult=None, **kw):
    """One image, one class: ``dets`` = [(box, score)], ``gts`` = [box]."""
    ev = VOCEvaluator(["thing"], plus_one=False, **kw)
    boxes = np.array([d[0] for d in dets], np.float32).reshape(-1, 4)
    ev.add(boxes, np.array([d[1] for d in dets], np.float32), np.ones(len(dets), np.int32),
           np.array(gts, np.float32).reshape(-1, 4), np.ones(len(gts), np.int32), difficult)
    r = ev.compute()
    return r.ap[0], r.ap_voc07[0]


# --------------------------------------------------------------------------- hand cases


def test_perfect_detections_give_ap_one():
    ev = VOCEvaluator(["a", "b"])
    for shift in (0, 7):
        gt = np.array([A, B], np.float32) + shift
        ev.add(gt, np.array([0.9, 0.8]), np.array([1, 2]), gt, np.array([1, 2]))
    r = ev.compute()
    np.testing.assert_array_equal(r.ap, [1.0, 1.0])
    # voc_eval sums eleven 1/11 terms: 1 + 2e-16, kept (the reference's rounding)
    np.testing.assert_allclose(r.ap_voc07, [1.0, 1.0], rtol=1e-15)
    assert r.metrics() == pytest.approx({"eval_map50": 1.0, "eval_map50_voc07": 1.0,
                                         "eval_ap50/a": 1.0, "eval_ap50/b": 1.0}, rel=1e-15)
    assert r.num_images == 2 and r.num_gt.tolist() == [2, 2]


def test_false_positive_ranked_first():
    # FP .9, TP .8, TP .7 with 2 boxes: recall 0, .5, 1; precision 0, 1/2, 2/3.
    # The envelope is 2/3 everywhere: all-point .5 * 2/3 + .5 * 2/3 = 2/3; 11-point: the
    # best precision at recall >= t is 2/3 for every t, so 2/3 too.
    ap, ap07 = _ap([(FAR, 0.9), (A, 0.8), (B, 0.7)], [A, B])
    assert ap == pytest.approx(2 / 3) and ap07 == pytest.approx(2 / 3)


def test_duplicate_is_false_positive_and_11_point_differs_from_all_point():
    # TP on A .9, duplicate on A .8 (FP), TP on B .7: recall .5, .5, 1; precision 1, 1/2, 2/3.
    # All-point: .5 * 1 + .5 * 2/3 = 5/6. 11-point: t = 0, .1, .2, .3, .4, .5 see precision 1,
    # t = .6 .. 1 (5 points) only 2/3: (6 + 5 * 2/3) / 11 = 28/33.
    ap, ap07 = _ap([(A, 0.9), (A, 0.8), (B, 0.7)], [A, B])
    assert ap == pytest.approx(5 / 6) and ap07 == pytest.approx(28 / 33)
    # without the duplicate both are 1
    assert _ap([(A, 0.9), (B, 0.7)], [A, B]) == pytest.approx((1.0, 1.0), rel=1e-15)


def test_difficult_boxes_are_neither_true_nor_false_positives():
    # D difficult, detected twice above A's detection: both ignored, so precision stays 1
    # (were they false positives, precision at A's detection would be 1/3 and AP 1/3; were D
    # an ordinary box, its second detection would be a duplicate).
    ap, ap07 = _ap([(D, 0.9), (D, 0.85), (A, 0.8)], [A, D], difficult=[False, True])
    assert (ap, ap07) == pytest.approx((1.0, 1.0), rel=1e-15)
    # an undetected difficult box does not count against recall (ordinary: AP 1/2)
    assert _ap([(A, 0.8)], [A, D], difficult=[False, True]) == pytest.approx((1.0, 1.0))
    assert _ap([(A, 0.8)], [A, D])[0] == pytest.approx(0.5)


def test_missed_box():
    # one TP of 2 boxes: recall .5, precision 1. All-point .5 * 1 = 1/2; 11-point: precision
    # 1 for t = 0 .. .5 (6 points), 0 above: 6/11.
    ap, ap07 = _ap([(A, 0.8)], [A, B])
    assert ap == pytest.approx(0.5) and ap07 == pytest.approx(6 / 11)


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    ev = VOCEvaluator(["a", "b", "c"])
    # a: one TP of two boxes (AP 1/2); b: only a detection, no ground truth; c: nothing
    ev.add(np.array([A, B], np.float32), np.array([0.9, 0.5]), np.array([1, 2]),
           np.array([A, D], np.float32), np.array([1, 1]))
    r = ev.compute()
    assert r.ap[0] == pytest.approx(0.5)
    assert np.isnan(r.ap[1]) and np.isnan(r.ap[2]) and np.isnan(r.ap_voc07[1])
    assert r.map == pytest.approx(0.5) and r.map_voc07 == pytest.approx(6 / 11)
    m = r.metrics()
    assert math.isnan(m["eval_ap50/b"]) and m["eval_map50"] == pytest.approx(0.5)
    table = r.table()
    assert "| b | 0 | 0 | 1 | n/a | n/a |" in table and "**0.500**" in table
    assert math.isnan(VOCEvaluator(["a"]).compute().map)  # nothing at all: NaN, no crash
    # the names carry the threshold in percent
    assert set(VOCEvaluator(["a"], iou_threshold=0.75).compute().metrics()) == {
        "eval_map75", "eval_map75_voc07", "eval_ap75/a"}


def test_threshold_comparison_and_plus_one_convention():
    # inclusive pixels 0..9 (100 px) vs 0..4 (50 px): the devkit's IoU is 50/100 = 0.5
    # exactly; continuous boxes give 36/81 < 0.5.
    gt, det = [[0, 0, 9, 9]], [([0, 0, 4, 9], 0.9)]
    ev_kw = {"plus_one": True}
    for inclusive, want in ((True, 1.0), (False, 0.0)):  # devkit >=, voc_eval.py >
        ev = VOCEvaluator(["x"], inclusive=inclusive, **ev_kw)
        ev.add(np.array([det[0][0]]), np.array([0.9]), np.array([1]), np.array(gt),
               np.array([1]))
        assert ev.compute().ap_voc07[0] == pytest.approx(want, rel=1e-15)
    assert _ap(det, gt) == (0.0, 0.0)  # plus_one=False
    assert voc_iou(np.array([[0, 0, 4, 9]]), np.array(gt))[0, 0] == 0.5


def test_voc_iou_without_plus_one_is_torchvision_box_iou():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (2, 30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 30, (2, 30, 2))], -1)
    boxes[1, :5] = boxes[0, :5]  # identical pairs
    want = torchvision.ops.box_iou(torch.tensor(boxes[0]), torch.tensor(boxes[1])).numpy()
    np.testing.assert_allclose(voc_iou(boxes[0], boxes[1], plus_one=False), want, rtol=1e-12)


def test_11_point_thresholds_are_voc_evals_floats():
    # np.arange(0, 1.1, 0.1)[3] is 0.30000000000000004, so recall 0.3 misses the 0.3 point,
    # exactly as in voc_eval.py: 3 points (0, .1, .2), not 4
    assert voc_ap(np.array([0.3]), np.array([1.0]), use_07_metric=True) == pytest.approx(3 / 11)
    assert voc_ap(np.array([]), np.array([])) == 0.0


def test_padded_batches_equal_per_image_adds():
    rng = np.random.default_rng(1)
    b, k, m = 3, 6, 5
    pb = rng.uniform(0, 40, (b, k, 4)).astype(np.float32)
    pb[..., 2:] += pb[..., :2]
    gb = rng.uniform(0, 40, (b, m, 4)).astype(np.float32)
    gb[..., 2:] += gb[..., :2]
    ps, pl = rng.uniform(size=(b, k)), rng.integers(1, 3, (b, k))
    gl, gd = rng.integers(1, 3, (b, m)), rng.uniform(size=(b, m)) < 0.2
    counts, gvalid = np.array([6, 2, 0]), np.arange(m)[None] < np.array([[5], [3], [4]])
    pl[1, 2:] = 0  # padding rows hold anything
    batched = VOCEvaluator(["p", "q"])
    batched.add_batch(pb, ps, pl, gb, gl, gd, pred_valid=counts, gt_valid=gvalid,
                      example_valid=np.array([1.0, 1.0, 0.0]))
    single = VOCEvaluator(["p", "q"])
    for i in range(2):
        single.add(pb[i, :counts[i]], ps[i, :counts[i]], pl[i, :counts[i]], gb[i][gvalid[i]],
                   gl[i][gvalid[i]], gd[i][gvalid[i]])
    r1, r2 = batched.compute(), single.compute()
    np.testing.assert_array_equal(r1.ap, r2.ap)
    assert r1.num_images == 2 and r1.num_detections.sum() == 8


def test_bad_input_is_refused_with_the_argument_named():
    ev = VOCEvaluator(["a"])
    box = np.array([A], np.float32)
    with pytest.raises(ValueError, match="pred_labels must lie in 1..1"):
        ev.add(box, np.array([0.5]), np.array([0]), box, np.array([1]))
    with pytest.raises(ValueError, match="gt_boxes must be 2-D with 4 entries"):
        ev.add(box, np.array([0.5]), np.array([1]), box[:, :3], np.array([1]))
    with pytest.raises(ValueError, match="pred_boxes must be .* x2 >= x1"):
        ev.add(np.array([[5, 0, 0, 5]]), np.array([0.5]), np.array([1]), box, np.array([1]))
    with pytest.raises(ValueError, match="pred_scores holds NaN"):
        ev.add(box, np.array([np.nan]), np.array([1]), box, np.array([1]))
    with pytest.raises(ValueError, match="iou_threshold"):
        VOCEvaluator(["a"], iou_threshold=0.0)


# --------------------------------------------------------------------------- voc_eval loop


def _voc_eval_reference(images, cls, thr, plus_one, inclusive):
    """py-faster-rcnn's ``voc_eval`` for one class, its loop transcribed (one change: a
    stable sort, so that ties rank in input order as in the devkit's MATLAB ``sort``)."""
    off = 1.0 if plus_one else 0.0
    class_recs, npos, ids, conf, bbs = {}, 0, [], [], []
    for i, im in enumerate(images):
        sel = im["gl"] == cls
        diff = im["gd"][sel]
        class_recs[i] = {"bbox": im["gb"][sel].astype(float), "difficult": diff,
                         "det": [False] * int(sel.sum())}
        npos += int((~diff).sum())
        for box, s, lab in zip(im["pb"], im["ps"], im["pl"], strict=True):
            if lab == cls:
                ids.append(i)
                conf.append(s)
                bbs.append(box)
    order = np.argsort(-np.array(conf, float), kind="stable")
    tp, fp = np.zeros(len(order)), np.zeros(len(order))
    for d, idx in enumerate(order):
        r, bb = class_recs[ids[idx]], np.asarray(bbs[idx], float)
        ovmax, gt = -np.inf, r["bbox"]
        if gt.size > 0:
            iw = np.maximum(np.minimum(gt[:, 2], bb[2]) - np.maximum(gt[:, 0], bb[0]) + off, 0.0)
            ih = np.maximum(np.minimum(gt[:, 3], bb[3]) - np.maximum(gt[:, 1], bb[1]) + off, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + off) * (bb[3] - bb[1] + off)
                   + (gt[:, 2] - gt[:, 0] + off) * (gt[:, 3] - gt[:, 1] + off) - inters)
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
        if (ovmax >= thr) if inclusive else (ovmax > thr):
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    if npos == 0:
        return math.nan, math.nan
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    out = []
    for use_07 in (False, True):  # voc_ap, transcribed
        if use_07:
            ap = 0.0
            for t in np.arange(0.0, 1.1, 0.1):
                p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
                ap = ap + p / 11.0
        else:
            mrec = np.concatenate(([0.0], rec, [1.0]))
            mpre = np.concatenate(([0.0], prec, [0.0]))
            for i in range(mpre.size - 1, 0, -1):
                mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
            i = np.where(mrec[1:] != mrec[:-1])[0]
            ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
        out.append(float(ap))
    return tuple(out)


def _random_images(seed: int, n_images: int, n_classes: int) -> list[dict]:
    """Detections near the ground truth and anywhere, on an integer grid (so IoUs hit the
    threshold exactly and boxes repeat) with few distinct scores (so scores tie)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        m = int(rng.integers(0, 5))
        xy = rng.integers(0, 30, (m, 2))
        gb = np.concatenate([xy, xy + rng.integers(3, 20, (m, 2))], 1).astype(np.float32)
        gl = rng.integers(1, n_classes + 1, m)
        k = int(rng.integers(0, 8))
        src = rng.integers(0, max(m, 1), k)
        near = gb[src] + rng.integers(-3, 4, (k, 4)) if m else np.zeros((k, 4))
        xy = rng.integers(0, 30, (k, 2))
        anywhere = np.concatenate([xy, xy + rng.integers(1, 15, (k, 2))], 1)
        is_near = (rng.uniform(size=k) < 0.7) & (m > 0)
        pb = np.where(is_near[:, None], near, anywhere).astype(np.float32)
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2])
        pl = rng.integers(1, n_classes + 1, k)
        if m:  # near boxes mostly carry their object's class
            pl = np.where(is_near & (rng.uniform(size=k) < 0.8), gl[src], pl)
        images.append({"pb": pb, "ps": rng.integers(0, 6, k) / 5.0, "pl": pl,
                       "gb": gb, "gl": gl, "gd": rng.uniform(size=m) < 0.2})
    return images


@given(seed=st.integers(0, 2**31 - 1), n_images=st.integers(1, 6),
       plus_one=st.booleans(), inclusive=st.booleans(),
       thr=st.sampled_from([0.5, 0.3, 0.75]))
@FAST
def test_equals_the_voc_eval_loop_on_random_detections(seed, n_images, plus_one, inclusive,
                                                       thr):
    images = _random_images(seed, n_images, 3)
    ev = VOCEvaluator(3, iou_threshold=thr, plus_one=plus_one, inclusive=inclusive)
    for im in images:
        ev.add(im["pb"], im["ps"], im["pl"], im["gb"], im["gl"], im["gd"])
    r = ev.compute()
    for c in range(3):
        want = _voc_eval_reference(images, c + 1, thr, plus_one, inclusive)
        np.testing.assert_allclose([r.ap[c], r.ap_voc07[c]], want, rtol=1e-12, atol=1e-12)


def _ap_of(images, scores=None):
    ev = VOCEvaluator(2, plus_one=False)
    for i, im in enumerate(images):
        ev.add(im["pb"], im["ps"] if scores is None else scores[i], im["pl"], im["gb"],
               im["gl"], im["gd"])
    r = ev.compute()
    return np.concatenate([r.ap, r.ap_voc07])


@given(seed=st.integers(0, 2**31 - 1), n_images=st.integers(1, 5))
@FAST
def test_properties(seed, n_images):
    images = _random_images(seed, n_images, 2)
    base = _ap_of(images)
    have = ~np.isnan(base)
    assert ((base[have] >= 0) & (base[have] <= 1 + 1e-12)).all()
    # a strictly increasing map of the scores keeps the ranking, ties included
    moved = _ap_of(images, [np.exp(3 * im["ps"]) - 7 for im in images])
    np.testing.assert_array_equal(np.isnan(moved), ~have)
    np.testing.assert_allclose(moved[have], base[have], rtol=0, atol=1e-12)
    # a duplicate of a detection, scored lower, is a false positive or ignored: never helps
    rng = np.random.default_rng(seed)
    for im in images:
        if len(im["ps"]):
            j = int(rng.integers(len(im["ps"])))
            dup = dict(im)
            dup["pb"] = np.concatenate([im["pb"], im["pb"][j:j + 1]])
            dup["ps"] = np.concatenate([im["ps"], [im["ps"][j] - rng.uniform(0.01, 0.5)]])
            dup["pl"] = np.concatenate([im["pl"], im["pl"][j:j + 1]])
            worse = _ap_of([dup if x is im else x for x in images])
            assert (worse[have] <= base[have] + 1e-12).all()


# --------------------------------------------------------------------------- real data


def test_bccd_ground_truth_as_detections_gives_ap_one(shared_data):
    root = shared_data / "bccd"
    if not root.is_dir():
        pytest.skip(f"bccd not found under {shared_data}")
    names = ["RBC", "WBC", "Platelets"]
    ev = VOCEvaluator(names)
    for stem in read_split(root, "test"):
        ann = parse_voc_xml(root / "Annotations" / f"{stem}.xml")
        boxes = np.array([o.box for o in ann.objects], np.float32).reshape(-1, 4)
        labels = np.array([names.index(o.name) + 1 for o in ann.objects], np.int32)
        ev.add(boxes, np.ones(len(boxes)), labels, boxes, labels)
    r = ev.compute()
    assert r.num_images == 72 and r.map == 1.0 and r.map_voc07 == pytest.approx(1.0, rel=1e-15)
    assert (r.num_gt > 0).all() and r.num_gt.sum() == r.num_detections.sum()


def _coco(path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _cocoeval_stats(gt, results, img_ids):
    """pycocotools run directly: what ``COCOEvaluator`` must reproduce."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


@pytest.fixture(scope="module")
def coco128(shared_data):
    ann = shared_data / "coco128" / "annotations" / "instances_train2017.json"
    if not ann.is_file():
        pytest.skip(f"coco128 annotations not found at {ann}")
    gt = _coco(ann)
    l2c = {k + 1: c for k, c in enumerate(sorted(gt.getCatIds()))}
    return ann, gt, l2c


def _xyxy(anns):
    return np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                      a["bbox"][1] + a["bbox"][3]] for a in anns], np.float64).reshape(-1, 4)


@pytest.mark.parametrize("with_crowd", [False, True])
def test_coco128_ground_truth_as_detections_gives_ap_one(coco128, with_crowd):
    # pycocotools: every non-crowd box found at score 1 -> AP 1 at every threshold and area;
    # detections on the 10 crowd regions are ignored, so adding them changes nothing
    _, gt, l2c = coco128
    c2l = {c: k for k, c in l2c.items()}
    ev = COCOEvaluator(gt)
    for img in sorted(gt.imgs):
        anns = [a for a in gt.imgToAnns[img] if with_crowd or not a["iscrowd"]]
        labels = np.array([c2l[a["category_id"]] for a in anns], np.int64)
        ev.add(img, _xyxy(anns), np.ones(len(anns)), labels)
    r = ev.compute()
    np.testing.assert_allclose(r.stats[:6], 1.0, rtol=0, atol=1e-12)
    assert r.metrics() == {"eval_coco_map": 1.0, "eval_coco_map50": 1.0, "eval_coco_map75": 1.0,
                           "eval_coco_map_small": 1.0, "eval_coco_map_medium": 1.0,
                           "eval_coco_map_large": 1.0}
    assert r.num_images == 128 and "Average Precision" in r.summary


def _perturbed(gt, seed=0):
    """Per image: jittered non-crowd boxes, random scores and labels (some wrong), drops."""
    rng = np.random.default_rng(seed)
    out = {}
    for img in sorted(gt.imgs):
        anns = [a for a in gt.imgToAnns[img] if not a["iscrowd"] and rng.uniform() < 0.9]
        boxes = _xyxy(anns)
        wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0)
        boxes = boxes + rng.normal(0, 0.08, boxes.shape) * np.tile(wh, 2)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)
        cats = [a["category_id"] for a in anns]
        out[img] = (boxes, rng.uniform(size=len(anns)), cats)
    return out


def test_coco128_perturbed_detections_equal_cocoeval_on_the_same_json(coco128, tmp_path):
    _, gt, l2c = coco128
    c2l = {c: k for k, c in l2c.items()}
    dets = _perturbed(gt)
    wrong = sorted(gt.getCatIds())[5]  # a wrong category on a few rows
    ev, by_hand, added = COCOEvaluator(gt, l2c), [], {}
    for n, (img, (boxes, scores, cats)) in enumerate(dets.items()):
        cats = [wrong if (n + k) % 7 == 0 else c for k, c in enumerate(cats)]
        added[img] = (boxes, scores, np.array([c2l[c] for c in cats], np.int64))
        pad = 3  # padded rows after the real ones, dropped by the count
        ev.add(img, np.concatenate([boxes, np.zeros((pad, 4))]),
               np.concatenate([scores, np.zeros(pad)]),
               np.concatenate([added[img][2], np.zeros(pad, np.int64)]), pred_valid=len(cats))
        by_hand += [{"image_id": img, "category_id": c, "score": float(s),
                     "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                    for b, s, c in zip(boxes.tolist(), scores, cats, strict=True)]
    path = tmp_path / "results.json"
    ev.write_results(path)
    assert json.loads(path.read_text()) == by_hand
    got = ev.compute()
    want = _cocoeval_stats(gt, str(path), sorted(gt.imgs))
    np.testing.assert_array_equal(got.stats, want)
    assert 0.3 < want[0] < 0.95  # a real, non-trivial score
    assert got.metrics()["eval_coco_map"] == want[0]

    # a subset of images is scored on those images alone (the rest are not misses)
    sub = sorted(gt.imgs)[:40]
    ev_sub = COCOEvaluator(gt, l2c)
    for img in sub:
        ev_sub.add(img, *added[img])
    sub_json = [r for r in by_hand if r["image_id"] in set(sub)]
    want_sub = _cocoeval_stats(gt, sub_json, sub)
    np.testing.assert_array_equal(ev_sub.compute().stats, want_sub)
    assert want_sub[0] != want[0]


def test_ground_truth_built_from_arrays_equals_the_annotation_file(coco128, tmp_path):
    # The non-crowd boxes of coco128 as VOC-style arrays -> a COCO object built as
    # torchvision's convert_to_coco_api does; pycocotools on the file without its crowd
    # annotations must agree on every all-area number (areas differ: box vs segment area).
    ann, gt, l2c = coco128
    c2l = {c: k for k, c in l2c.items()}
    data = json.loads(ann.read_text())
    data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]
    nocrowd_path = tmp_path / "nocrowd.json"
    nocrowd_path.write_text(json.dumps(data))
    nocrowd = _coco(nocrowd_path)
    dets = _perturbed(gt, seed=1)
    ev = COCOEvaluator(None, l2c, class_names=[gt.cats[c]["name"] for c in sorted(gt.cats)])
    results = []
    for img, (boxes, scores, cats) in dets.items():
        anns = [a for a in gt.imgToAnns[img] if not a["iscrowd"]]
        labels = np.array([c2l[c] for c in cats])
        info = gt.imgs[img]
        ev.add(img, boxes, scores, labels, gt_boxes=_xyxy(anns),
               gt_labels=np.array([c2l[a["category_id"]] for a in anns]),
               image_size=(info["height"], info["width"]))
        results += coco_results(img, boxes, scores, labels, l2c)
    got = ev.compute().stats
    want = _cocoeval_stats(nocrowd, results, sorted(gt.imgs))
    all_area = [0, 1, 2, 6, 7, 8]  # AP@[.5:.95], AP50, AP75, AR@1, AR@10, AR@100
    np.testing.assert_array_equal(got[all_area], want[all_area])


def test_coco_from_arrays_hand_case_and_errors():
    ev = COCOEvaluator(class_names=["a", "b"])
    ev.add(1, np.array([A, B], float), np.array([0.9, 0.8]), np.array([1, 2]),
           gt_boxes=np.array([A, B], float), gt_labels=np.array([1, 2]))
    ev.add(2, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), gt_boxes=np.zeros((0, 4)),
           gt_labels=np.zeros(0, int))
    r = ev.compute()
    assert r.stats[0] == pytest.approx(1.0, rel=1e-15) and r.stats[4] == -1
    m = r.metrics()  # 10 x 10 boxes are small; no medium one: pycocotools' -1 becomes NaN
    assert m["eval_coco_map_small"] == pytest.approx(1.0) and math.isnan(m["eval_coco_map_medium"])
    with pytest.raises(ValueError, match="image 1 was added twice"):
        ev.add(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), gt_boxes=np.zeros((0, 4)),
               gt_labels=np.zeros(0, int))
    with pytest.raises(ValueError, match="needs gt_boxes and gt_labels"):
        ev.add(3, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    with pytest.raises(ValueError, match="label 3 has no category id"):
        ev.add(4, np.array([A], float), np.array([0.5]), np.array([3]),
               gt_boxes=np.zeros((0, 4)), gt_labels=np.zeros(0, int))
    with pytest.raises(ValueError, match="no image was added"):
        COCOEvaluator(class_names=["a"]).compute()
    # no detection at all: AP 0 where there is ground truth
    ev = COCOEvaluator(class_names=["a"])
    ev.add(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), gt_boxes=np.array([A], float),
           gt_labels=np.array([1]))
    assert ev.compute().stats[0] == 0.0
