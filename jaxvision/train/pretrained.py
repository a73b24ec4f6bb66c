"""``model.init_from``: start a run from trained variables instead of random ones.

The source is a training workdir (its latest checkpoint) or torchvision weights through
:func:`jaxvision.weights.load` (``torchvision:NAME`` downloads the published weights of the
zoo model ``NAME``; ``torchvision:NAME:FILE.pth`` reads a local file). Its variables are
placed under ``model.init_from_target`` (a '/'-separated submodule path, e.g. ``backbone``:
a classifier's parameters onto a :class:`~jaxvision.localization.Localizer`'s backbone), or
onto the whole model. Arrays are matched by path: every loaded array must fit the array of
the same path in the model (same shape), except those the source has and the model does not
(the classifier head of an ImageNet net under a backbone), which are reported, and those
``model.init_from_skip`` names. Model arrays the source does not give keep their
initialisation (a new head); they are reported too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from jaxvision.train import workdir as wd

COLLECTIONS = ("params", "batch_stats")


def load_variables(source: str) -> dict[str, Any]:
    """``{"params": ..., "batch_stats": ...}`` (numpy) of ``source`` (see the module doc)."""
    if source.startswith("torchvision:"):
        from jaxvision.weights import load

        rest = source[len("torchvision:"):]
        name, _, file = rest.partition(":")
        if not name:
            raise ValueError(f"model.init_from={source!r}: expected 'torchvision:NAME' or "
                             "'torchvision:NAME:FILE.pth'")
        variables = load(name, file or None, progress=False)
        return {k: v for k, v in variables.items() if k in COLLECTIONS}
    path = Path(source).expanduser()
    if not wd.is_workdir(path):
        raise FileNotFoundError(f"model.init_from={source!r} is neither a training workdir "
                                f"(no {wd.config_path(path)}) nor 'torchvision:NAME[:FILE]'")
    return _restore_workdir(path)


def _restore_workdir(path: Path) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    from jaxvision.train import checkpoint

    manager = checkpoint.make_manager(path, read_only=True)
    try:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"model.init_from={str(path)!r}: no checkpoint in "
                                    f"{wd.checkpoint_dir(path)}")
        # No template: the source's arrays come back as saved (numpy), whatever its model.
        restored = manager.restore(step, args=ocp.args.Composite(**{
            checkpoint.STATE: ocp.args.StandardRestore()}))[checkpoint.STATE]
    finally:
        manager.close()
    return {k: jax.tree_util.tree_map(np.asarray, restored.get(k) or {}) for k in COLLECTIONS}


def _flat(tree: Any) -> dict[str, Any]:
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()} \
        if tree else {}


def graft(variables: dict[str, Any], loaded: dict[str, Any], target: str | None = None,
          skip: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, list]]:
    """``variables`` with ``loaded``'s arrays placed under ``target`` (see the module doc).

    Args:
      variables: the model's fresh ``{"params": ..., "batch_stats": ...}``.
      loaded: the source's variables, same layout.
      target: '/'-separated submodule path inside the model, or None (the whole model).
      skip: regular expressions over '/'-joined source paths (without the collection) that
        are not loaded.
    Returns:
      ``(variables, report)``; ``report`` lists the ``loaded``, ``unused`` (in the source,
      not in the model), ``skipped`` and ``kept`` (model arrays left at their init) paths as
      ``collection/path``.
    Raises:
      ValueError: the target is not a submodule of the model, nothing would load, or an
        array's shape differs (names the path and both shapes).
    """
    rx = [re.compile(p) for p in skip]
    prefix = f"{target.strip('/')}/" if target else ""
    out: dict[str, Any] = {}
    report: dict[str, list] = {"loaded": [], "unused": [], "skipped": [], "kept": []}
    for col in COLLECTIONS:
        mine = _flat(variables.get(col))
        theirs = _flat(loaded.get(col))
        if target and mine and not any(k.startswith(prefix) for k in mine) and col == "params":
            tops = sorted({k.split("/")[0] for k in mine})
            raise ValueError(f"model.init_from_target={target!r} is not a submodule of the "
                             f"model; its top-level modules: {tops}")
        for path, value in theirs.items():
            if any(r.fullmatch(path) for r in rx):
                report["skipped"].append(f"{col}/{path}")
                continue
            dest = prefix + path
            if dest not in mine:
                report["unused"].append(f"{col}/{path}")
                continue
            if tuple(np.shape(value)) != tuple(np.shape(mine[dest])):
                raise ValueError(
                    f"model.init_from: {col}/{path} has shape {tuple(np.shape(value))} but "
                    f"the model's {col}/{dest} has {tuple(np.shape(mine[dest]))}; add a "
                    f"pattern to model.init_from_skip to leave it at its initialisation")
            mine[dest] = np.asarray(value, dtype=np.asarray(mine[dest]).dtype)
            report["loaded"].append(f"{col}/{dest}")
        loaded_here = {p.split("/", 1)[1] for p in report["loaded"] if p.startswith(col + "/")}
        report["kept"] += [f"{col}/{k}" for k in mine if k not in loaded_here]
        if col in variables:
            out[col] = traverse_util.unflatten_dict({tuple(k.split("/")): v
                                                     for k, v in mine.items()})
    if not report["loaded"]:
        raise ValueError(f"model.init_from: no array of the source fits the model under "
                         f"{target or 'its root'!r} (source arrays: "
                         f"{report['unused'][:6]}...)")
    return out, report


def init_from(config: ml_collections.ConfigDict, variables: dict[str, Any]
              ) -> tuple[dict[str, Any], dict[str, list]]:
    """``variables`` initialised from ``config.model.init_from`` (:func:`graft`)."""
    m = config.model
    return graft(variables, load_variables(m.init_from), m.init_from_target,
                 list(m.init_from_skip))


def summary(source: str, report: dict[str, list]) -> str:
    """One line for the training log."""
    def few(xs: list[str]) -> str:
        return ", ".join(xs[:4]) + (" ..." if len(xs) > 4 else "")

    parts = [f"init_from {source}: loaded {len(report['loaded'])} arrays"]
    for key, what in (("kept", "kept at init"), ("unused", "not in the model"),
                      ("skipped", "skipped")):
        if report[key]:
            parts.append(f"{len(report[key])} {what} ({few(report[key])})")
    return "; ".join(parts)
