"""The README's promises: its first Python example runs, its commands are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 (our own README)


def test_opens_with_the_two_commands() -> None:
    bash = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert "jaxvision train" in bash[0] and "pip install -e ." in bash[0]
    assert bash[1].strip() == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest" in ci and 'pip install -q -e ".[test]"' in ci


def test_cli_commands_in_readme_exist() -> None:
    from jaxvision.cli import build_parser, sub_names

    bash = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S))
    named = set(re.findall(r"^jaxvision (\w+)", bash, flags=re.M))
    assert {"train", "eval", "predict", "convert"} <= named
    assert named <= set(sub_names(build_parser())), named
