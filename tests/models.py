"""Copies of a bundled model folder with text edits, for tests that need a broken or changed model."""

import shutil
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "models" / "template"


def model_copy(tmp_path, source=TEMPLATE, edits=None):
    """A copy of a model folder with text edits: {file: (old, new)} or {file: callable(text) -> text}."""
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    for name, edit in (edits or {}).items():
        path = folder / name
        text = path.read_text(encoding="utf-8")
        if callable(edit):
            new = edit(text)
        else:
            assert edit[0] in text, (name, edit[0])
            new = text.replace(edit[0], edit[1], 1)
        path.write_text(new, encoding="utf-8")
    return folder
