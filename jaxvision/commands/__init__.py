"""Subcommands of the ``jaxvision`` command line (see :mod:`jaxvision.cli`)."""

from __future__ import annotations

from collections.abc import Sequence


def check_image_args(images: Sequence[str], outputs: str) -> None:
    """Fails before any model loads: two images whose outputs (``outputs``, e.g.
    ``"{stem}_boxes.png"``) would overwrite each other, or a missing or unreadable file."""
    from pathlib import Path

    from jaxvision.weights.transforms import check_image_file

    stems: dict[str, str] = {}
    for path in images:
        stem = Path(path).stem
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {path} would write the same output "
                             f"{outputs.format(stem=stem)}; rename one")
        stems[stem] = path
    for path in images:
        check_image_file(path)

