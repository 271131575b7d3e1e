"""Progress bars that name their stage: a tqdm bar, nothing, or the caller's own callback."""

from __future__ import annotations

from collections.abc import Callable


class Bar:
    """A progress callback (``bar(steps)``; ``bar(None)`` closes it) and a context manager that closes it on the
    way out, also when the work fails (so a bar never prints after the error that ended its stage)."""

    def __init__(self, update: Callable):
        self.update = update

    def __call__(self, step) -> None:
        self.update(step)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.update(None)


def progress_bar(progress, total: int, label: str) -> Bar:
    """A progress callback: a tqdm bar named after the stage, none, or the caller's own callable."""
    if callable(progress):
        return Bar(lambda step: progress(step) if step is not None else None)
    if not progress:
        return Bar(lambda step: None)
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
    return Bar(update)
