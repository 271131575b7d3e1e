"""fiscalsim: fiscal allocation simulation for the Binjiang 2024 policy package.

Stages, one module each: :mod:`sim.policy` (model loading), :mod:`sim.awards` (award kernels),
and the CLI in :mod:`sim.cli`.  Money is in 萬元 throughout.
"""

__version__ = "0.1.0"


def compare(*run_dirs):
    """Scenarios side by side per domain and article (see :func:`sim.report.compare`)."""
    from sim.report import compare as compare_runs

    return compare_runs(*run_dirs)
