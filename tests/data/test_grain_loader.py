"""jaxvision/data/grain_loader.py: Grain runs the DataLoader's plan, batch for batch equal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxvision.data import VALID, DataLoader

from .test_loader import _ids, _indexed_source, _noise_transform, _take

pytest.importorskip("grain")
from jaxvision.data.grain_loader import GrainLoader  # noqa: E402


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        for k in x:
            assert type(y[k]) is np.ndarray and y[k].dtype == x[k].dtype
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("read_threads", [0, 3])
def test_equals_the_loader_sharded_padded_with_a_transform(read_threads):
    kw = dict(seed=3, num_epochs=2, pad_final=True, transform=_noise_transform)
    for shard in range(2):
        ref = list(DataLoader(_indexed_source(45), 4, shard_index=shard, shard_count=2, **kw))
        got = list(GrainLoader(_indexed_source(45), 4, shard_index=shard, shard_count=2,
                               read_threads=read_threads, **kw))
        _assert_same(ref, got)
        assert got[-1][VALID].sum() == (4 if shard == 0 else 1) and len(got) == 2 * 6


def test_resume_is_exact_and_states_are_interchangeable():
    def make(cls):
        return cls(_indexed_source(30), 6, seed=4, shard_index=0, shard_count=1,
                   transform=_noise_transform)

    ref = _take(iter(make(DataLoader)), 11)
    interrupted = make(GrainLoader)
    _take(iter(interrupted), 7)  # crosses the epoch boundary (5 steps per epoch)
    state = json.loads(json.dumps(interrupted.get_state()))
    assert (state["epoch"], state["step"]) == (1, 2)
    for cls in (GrainLoader, DataLoader):  # either backend resumes the other's state
        resumed = make(cls)
        resumed.set_state(state)
        _assert_same(ref[7:], _take(iter(resumed), 4))


def test_grain_worker_processes_give_the_same_batches():
    kw = dict(seed=1, num_epochs=1, shard_index=0, shard_count=1, transform=_noise_transform)
    ref = list(DataLoader(_indexed_source(40), 8, **kw))
    got = list(GrainLoader(_indexed_source(40), 8, worker_count=2, **kw))
    _assert_same(ref, got)
    assert sorted(np.concatenate([_ids(b) for b in got]).tolist()) == list(range(40))
