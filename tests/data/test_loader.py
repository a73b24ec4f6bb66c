"""jaxvision/data/loader.py: coverage, sharding, padding and exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxvision.data import VALID, ArraySource, DataLoader, mnist_source


def _indexed_source(n: int, hw: int = 2) -> ArraySource:
    """Each image holds its own index (mod 256 in pixel 0, div 256 in pixel 1): easy to trace."""
    images = np.zeros((n, hw, hw, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 1, 0] = np.arange(n) // 256
    return ArraySource(images, np.arange(n) % 7, num_classes=7)


def _ids(batch) -> np.ndarray:
    img = batch["image"].astype(np.int64)
    return img[:, 0, 0, 0] + 256 * img[:, 0, 1, 0]


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_batches_shapes_dtypes_and_len():
    src = mnist_source("test")
    loader = DataLoader(src, 128, shard_index=0, shard_count=1)
    assert len(loader) == loader.steps_per_epoch == 2000 // 128
    b = next(iter(loader))
    assert b["image"].shape == (128, 28, 28, 1) and b["image"].dtype == np.uint8
    assert b["label"].shape == (128,) and b["label"].dtype == np.int32
    assert b[VALID].dtype == np.bool_ and b[VALID].all()


def test_default_shard_is_jax_process():
    loader = DataLoader(_indexed_source(10), 2)
    assert (loader.shard_index, loader.shard_count) == (0, 1)


def test_every_example_once_per_epoch_shuffled_and_reproducible():
    n, bs = 103, 10
    loader = DataLoader(
        _indexed_source(n),
        bs,
        drop_remainder=False,
        num_epochs=2,
        seed=3,
        shard_index=0,
        shard_count=1,
    )
    batches = list(loader)
    assert len(batches) == 2 * len(loader) == 22 and batches[10]["image"].shape[0] == 3
    e0 = np.concatenate([_ids(b) for b in batches[:11]])
    e1 = np.concatenate([_ids(b) for b in batches[11:]])
    assert sorted(e0) == list(range(n)) == sorted(e1)
    assert not np.array_equal(e0, np.arange(n)) and not np.array_equal(e0, e1)
    again = DataLoader(
        _indexed_source(n),
        bs,
        drop_remainder=False,
        num_epochs=2,
        seed=3,
        shard_index=0,
        shard_count=1,
    )
    np.testing.assert_array_equal(
        np.concatenate([_ids(b) for b in again]), np.concatenate([e0, e1])
    )
    other = DataLoader(_indexed_source(n), bs, num_epochs=1, seed=4, shard_index=0, shard_count=1)
    assert not np.array_equal(np.concatenate([_ids(b) for b in other]), e0[:100])
    # Labels travel with their images.
    src = _indexed_source(n)
    for b in batches:
        np.testing.assert_array_equal(b["label"], src.labels[_ids(b)])


def test_drop_remainder_and_no_shuffle():
    loader = DataLoader(
        _indexed_source(25), 10, shuffle=False, num_epochs=1, shard_index=0, shard_count=1
    )
    ids = [_ids(b).tolist() for b in loader]
    assert ids == [list(range(10)), list(range(10, 20))]


def test_sharding_disjoint_and_covering():
    n, bs, k = 120, 5, 3
    per = [
        list(DataLoader(_indexed_source(n), bs, num_epochs=1, seed=1, shard_index=i, shard_count=k))
        for i in range(k)
    ]
    assert all(len(p) == n // (bs * k) == 8 for p in per)
    ids = [np.concatenate([_ids(b) for b in p]) for p in per]
    assert sorted(np.concatenate(ids).tolist()) == list(range(n))
    # Step by step, the shards are the consecutive slices of one global batch.
    glob = list(
        DataLoader(_indexed_source(n), bs * k, num_epochs=1, seed=1, shard_index=0, shard_count=1)
    )
    for s in range(8):
        np.testing.assert_array_equal(np.concatenate([_ids(p[s]) for p in per]), _ids(glob[s]))


def test_pad_final_masks_keep_every_example_once():
    n, bs, k = 23, 4, 2
    seen = []
    for i in range(k):
        batches = list(
            DataLoader(
                _indexed_source(n),
                bs,
                shuffle=False,
                num_epochs=1,
                pad_final=True,
                shard_index=i,
                shard_count=k,
            )
        )
        assert len(batches) == 3  # ceil(23 / 8), equal on both processes
        for b in batches:
            assert b["image"].shape[0] == bs
            seen += _ids(b)[b[VALID]].tolist()
        last = batches[-1][VALID].tolist()
        assert last == ([True] * 4 if i == 0 else [True, True, True, False])
    assert sorted(seen) == list(range(n))
    # The eval loader can be looped over again (a fresh pass each time).
    loader = DataLoader(
        _indexed_source(n),
        8,
        shuffle=False,
        num_epochs=1,
        pad_final=True,
        shard_index=0,
        shard_count=1,
    )
    first = [_ids(b).tolist() for b in loader]
    assert [_ids(b).tolist() for b in loader] == first and first[-1][7:] == [0]


def _resume_check(make, k):
    reference = make()
    ref_it = iter(reference)
    ref = [_ids(b) for b in _take(ref_it, k + 7)]
    interrupted = make()
    it = iter(interrupted)
    _take(it, k)
    state = json.loads(json.dumps(interrupted.get_state()))
    del it
    resumed = make()
    resumed.set_state(state)
    got = [_ids(b) for b in _take(iter(resumed), 7)]
    for a, b in zip(got, ref[k:], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [3, 8, 9])  # mid-epoch, just before and after the boundary
def test_resume_is_exact(k):
    # 90 examples, batch 10 -> 9 steps per epoch: k=9 resumes exactly at epoch 1 step 0, and
    # the 7 batches after k=3 and k=8 cross the epoch boundary.
    _resume_check(
        lambda: DataLoader(_indexed_source(90), 10, seed=5, shard_index=0, shard_count=1), k
    )


def test_state_mismatch_errors():
    loader = DataLoader(_indexed_source(90), 10, seed=5, shard_index=0, shard_count=1)
    state = loader.get_state()
    with pytest.raises(ValueError, match="seed: state 5 vs loader 6"):
        DataLoader(_indexed_source(90), 10, seed=6, shard_index=0, shard_count=1).set_state(state)
    with pytest.raises(ValueError, match="num_examples"):
        DataLoader(_indexed_source(91), 10, seed=5, shard_index=0, shard_count=1).set_state(state)
    with pytest.raises(ValueError, match="step=12 invalid"):
        loader.set_state({**state, "step": 12})
    with pytest.raises(ValueError, match="lacks"):
        loader.set_state({"epoch": 0})


def test_bad_arguments():
    with pytest.raises(ValueError, match="exceeds the 5 examples"):
        DataLoader(_indexed_source(5), 8, shard_index=0, shard_count=1)
    with pytest.raises(ValueError, match="shard_index"):
        DataLoader(_indexed_source(5), 1, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="pad_final=True"):
        DataLoader(_indexed_source(5), 1, drop_remainder=False, shard_index=0, shard_count=2)


def _dense_source(n: int) -> ArraySource:
    """Index-traced images with extra per-example fields (boxes, a mask, an id)."""
    base = _indexed_source(n)
    boxes = np.arange(n * 3 * 4, dtype=np.float32).reshape(n, 3, 4)
    mask = (np.arange(n)[:, None, None] + np.zeros((1, 2, 2), int)).astype(np.uint8)
    return ArraySource(base.images, boxes=boxes, mask=mask, image_id=np.arange(n) + 1000)


def test_every_field_is_stacked():
    src = _dense_source(20)
    ex = src[3]
    assert sorted(ex) == ["boxes", "image", "image_id", "mask"]  # no label without labels
    assert ex["boxes"].shape == (3, 4) and int(ex["image_id"]) == 1003
    with pytest.raises(ValueError, match="read-only"):  # a transform cannot edit the source
        ex["boxes"][0, 0] = 1
    for workers in (0, 1):
        b = next(iter(DataLoader(src, 4, seed=1, shard_index=0, shard_count=1,
                                 worker_count=workers)))
        assert sorted(b) == [VALID, "boxes", "image", "image_id", "mask"]
        ids = _ids(b)
        np.testing.assert_array_equal(b["boxes"], src.fields["boxes"][ids])
        assert b["boxes"].dtype == np.float32 and b["mask"].shape == (4, 2, 2)
        np.testing.assert_array_equal(b["image_id"], ids + 1000)
    with pytest.raises(ValueError, match="field 'boxes' must have leading dimension N=20"):
        ArraySource(src.images, boxes=np.zeros((19, 4)))
    with pytest.raises(ValueError, match="reserved"):
        ArraySource(src.images, _valid=np.zeros(20))


class _ListSource:
    """A plain list of example dicts (no get_batch): the per-example stacking path."""

    def __init__(self, examples):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def test_stacking_errors_name_the_field():
    img = np.zeros((2, 2, 3), np.uint8)
    ragged = _ListSource([{"image": img, "boxes": np.zeros((k + 1, 4))} for k in range(2)])
    with pytest.raises(ValueError, match=r"field 'boxes' has different shapes.*\(1, 4\).*\(2, 4\)"):
        next(iter(DataLoader(ragged, 2, shuffle=False, shard_index=0, shard_count=1)))
    fields = _ListSource([{"image": img, "boxes": np.zeros(4)}, {"image": img}])
    with pytest.raises(ValueError, match="different fields"):
        next(iter(DataLoader(fields, 2, shuffle=False, shard_index=0, shard_count=1)))
    reserved = _ListSource([{"image": img, "_valid": True}] * 2)
    with pytest.raises(ValueError, match="'_valid' starts with '_'"):
        next(iter(DataLoader(reserved, 2, shuffle=False, shard_index=0, shard_count=1)))


def _noise_transform(example, rng):
    """Adds two random draws as new fields (the image, which carries the index, is kept)."""
    out = dict(example)
    out["draw"] = rng.integers(0, 2**31, dtype=np.int64)
    out["shift"] = np.float32(rng.uniform())
    return out


def test_transform_is_a_pure_function_of_seed_epoch_index():
    n = 30
    make = lambda w=0, seed=2: DataLoader(_indexed_source(n), 6, seed=seed, num_epochs=2,  # noqa: E731
                                          shard_index=0, shard_count=1, worker_count=w,
                                          transform=_noise_transform)
    batches = list(make())
    assert sorted(batches[0]) == [VALID, "draw", "image", "label", "shift"]
    assert batches[0]["label"].dtype == np.int32
    from jaxvision.data import example_rng

    for e, b in [(0, batches[0]), (1, batches[5])]:  # 5 steps per epoch
        for i, d in zip(_ids(b), b["draw"], strict=True):
            assert d == example_rng(2, e, int(i)).integers(0, 2**31, dtype=np.int64)
    # Different epochs draw differently for the same example; another seed too.
    by_epoch = [{int(i): int(d) for b in batches[5 * e:5 * e + 5]
                 for i, d in zip(_ids(b), b["draw"], strict=True)} for e in (0, 1)]
    assert sorted(by_epoch[0]) == list(range(n)) == sorted(by_epoch[1])
    assert all(by_epoch[0][i] != by_epoch[1][i] for i in range(n))
    other = list(make(seed=3))
    assert not np.array_equal(other[0]["draw"], batches[0]["draw"])
    # Worker processes give exactly the same batches.
    for a, b in zip(list(make(w=2)), batches, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("k", [2, 5])
def test_transform_resume_is_exact(k):
    def make():
        return DataLoader(_indexed_source(30), 6, seed=4, shard_index=0, shard_count=1,
                          transform=_noise_transform)

    ref = _take(iter(make()), k + 4)
    interrupted = make()
    _take(iter(interrupted), k)
    resumed = make()
    resumed.set_state(json.loads(json.dumps(interrupted.get_state())))
    for a, b in zip(_take(iter(resumed), 4), ref[k:], strict=True):
        np.testing.assert_array_equal(a["draw"], b["draw"])
        np.testing.assert_array_equal(_ids(a), _ids(b))


def test_transform_must_return_a_dict():
    loader = DataLoader(_indexed_source(4), 2, shard_index=0, shard_count=1,
                        transform=lambda ex, rng: ex["image"])
    with pytest.raises(TypeError, match="transform must return a dict"):
        next(iter(loader))
