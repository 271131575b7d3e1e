"""fiscalsim: fiscal allocation simulation for the Binjiang 2024 policy package.

One module per stage, data flowing one way:

- :mod:`sim.policy` loads and validates a policy model (articles, domains, attributes, award rules);
- :mod:`sim.awards` holds one vectorised kernel per award pattern, ``evaluate`` and ``explain``;
  :mod:`sim.fused` is the compiled hot path that the claims engine uses (bit-identical results);
- :mod:`sim.population` generates the synthetic claimant population (or reads a real register);
- :mod:`sim.montecarlo` runs replications into per-rule totals; :mod:`sim.results` stores run folders;
- :mod:`sim.process` is the SimPy model of application, review and payment;
- :mod:`sim.budget` holds the coverage, top-up, reallocation and CVaR budget LPs;
- :mod:`sim.scenario` applies scenario overrides; :mod:`sim.report` draws and writes reports;
- :mod:`sim.cli` is the ``fiscalsim`` command.

Money is in 萬元 throughout.
"""

__version__ = "0.1.0"


def compare(*run_dirs):
    """Scenarios side by side per domain and article (see :func:`sim.report.compare`)."""
    from sim.report import compare as compare_runs

    return compare_runs(*run_dirs)
