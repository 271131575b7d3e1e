"""Progress bars that name their stage: a tqdm bar, nothing, or the caller's own callback."""

from __future__ import annotations

from collections.abc import Callable


def progress_bar(progress, total: int, label: str) -> Callable:
    """A progress callback: a tqdm bar named after the stage, none, or the caller's own callable."""
    if callable(progress):
        return lambda step: progress(step) if step is not None else None
    if not progress:
        return lambda step: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="task", desc=label, dynamic_ncols=True)
    first = [True]

    def update(step):
        if step is None:
            bar.close()
        elif first[0] and total > 2:  # the first task pays for imports and compilation: time the rest
            first[0] = False
            bar.reset(total=total)
            bar.update(step)
        else:
            bar.update(step)
    return update
