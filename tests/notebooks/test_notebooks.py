"""Every notebook in ``notebooks/`` runs top to bottom headless, as a user would run it.

The notebooks are documentation that executes: a cell that raises, or an output that
stops matching what the prose claims (the cells assert their own key results), fails here.
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {"00_model_zoo.ipynb", "01_training.ipynb",
            "02_classification_to_detection.ipynb", "04_segmentation.ipynb"} <= set(names), names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_headless(path: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Notebooks that write files (checkpoints, figures) do so in a scratch directory.
    monkeypatch.setenv("JAXVISION_NOTEBOOK_WORKDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} produced no output at all"
