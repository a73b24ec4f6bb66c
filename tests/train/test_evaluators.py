"""Evaluators: padded rows drop out, sums over batches equal the metric on all examples."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.localization import localization_correct, paired_iou, pck
from jaxvision.train.evaluators import Accuracy, BoxLocalization, KeypointPCK, run_evaluators
from jaxvision.train.evaluators.base import SumEvaluator


def _data(n: int = 10, k: int = 7):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20, (n, 2))
    gt = np.concatenate([xy, xy + rng.uniform(5, 15, (n, 2))], 1).astype(np.float32)
    pred = (gt + rng.normal(0, 3, gt.shape)).astype(np.float32)
    return {"log_probs": np.log(rng.dirichlet(np.ones(k), n)).astype(np.float32),
            "label": rng.integers(0, k, n).astype(np.int32), "pred_boxes": pred,
            "boxes": gt[:, None],  # the dense contract's [N, max_boxes, 4], first box used
            "kp_pred": rng.uniform(0, 30, (n, 3, 2)).astype(np.float32),
            "kp": rng.uniform(0, 30, (n, 3, 2)).astype(np.float32)}


def _passes(d: dict, batch: int):
    """Batches of ``batch`` rows, the last padded with copies of row 0 (valid 0)."""
    n = len(d["label"])
    for s in range(0, n, batch):
        idx = np.arange(s, s + batch)
        valid = (idx < n).astype(np.float32)
        idx = np.where(idx < n, idx, 0)
        preds = {"log_probs": d["log_probs"][idx], "label": d["log_probs"][idx].argmax(-1),
                 "boxes": d["pred_boxes"][idx], "keypoints": d["kp_pred"][idx]}
        b = {"label": d["label"][idx], "boxes": d["boxes"][idx], "keypoints": d["kp"][idx]}
        yield ({k: jnp.asarray(v) for k, v in preds.items()},
               {k: jnp.asarray(v) for k, v in b.items()}, jnp.asarray(valid))


def test_evaluators_over_padded_batches_equal_the_metrics_on_all_examples():
    d = _data()
    evaluators = [Accuracy(), BoxLocalization(), KeypointPCK()]

    def eval_fn(state, batch):
        preds, b, valid = batch
        return [ev.batch_fn(preds, b, valid) for ev in evaluators]

    got = run_evaluators(eval_fn, None, _passes(d, 4), evaluators)  # 10 rows: 4 + 4 + 2 (+2)
    top1 = d["log_probs"].argmax(-1)
    top5 = np.argsort(-d["log_probs"], -1)[:, :5]
    assert got["eval_count"] == 10
    assert got["eval_top1"] == pytest.approx(np.mean(top1 == d["label"]))
    assert got["eval_top5"] == pytest.approx(np.mean((top5 == d["label"][:, None]).any(1)))
    nll = -d["log_probs"][np.arange(10), d["label"]]
    assert got["eval_loss"] == pytest.approx(nll.mean(), rel=1e-5)
    ok = localization_correct(jnp.asarray(top1), jnp.asarray(d["pred_boxes"]),
                              jnp.asarray(d["label"]), jnp.asarray(d["boxes"][:, 0]))
    assert got["eval_localization"] == pytest.approx(float(jnp.mean(ok)))
    iou = paired_iou(jnp.asarray(d["pred_boxes"]), jnp.asarray(d["boxes"][:, 0]))
    assert got["eval_mean_iou"] == pytest.approx(float(jnp.mean(iou)), rel=1e-5)
    frame = d["boxes"][:, 0, 2] - d["boxes"][:, 0, 0]
    assert got["eval_pck"] == pytest.approx(float(pck(jnp.asarray(d["kp_pred"]),
                                                      jnp.asarray(d["kp"]),
                                                      jnp.asarray(frame))))


def test_run_evaluators_refuses_a_metric_reported_twice_and_an_empty_pass():
    d = _data()
    evaluators = [Accuracy(), Accuracy()]

    def eval_fn(state, batch):
        preds, b, valid = batch
        return [ev.batch_fn(preds, b, valid) for ev in evaluators]

    with pytest.raises(ValueError, match="same metric twice"):
        run_evaluators(eval_fn, None, _passes(d, 5), evaluators)
    with pytest.raises(ValueError, match="Accuracy: no batches were evaluated"):
        run_evaluators(eval_fn, None, iter(()), [Accuracy()])
    assert issubclass(Accuracy, SumEvaluator)
