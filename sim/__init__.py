"""fiscalsim: fiscal allocation simulation for a policy package written as data (``models/``).

One module per stage, data flowing one way (model data -> population -> awards -> Monte Carlo totals ->
process -> budget LPs -> report):

- :mod:`sim.policy` loads and validates a policy model (articles, domains, attributes, award rules);
- :mod:`sim.kinds` is the registry of rule kinds: each award pattern's numbers, NumPy kernel, compiled
  kernel and explanation, declared once;
- :mod:`sim.awards` applies every rule to a firm table (``evaluate``) and explains one claimant;
  :mod:`sim.fused` is the compiled hot path that the claims engine uses (bit-identical results);
  :mod:`sim.firms` reads and checks registers of firms (.xlsx, .csv, .parquet);
- :mod:`sim.population` generates the synthetic claimant population (or reads a real register);
- :mod:`sim.assumptions` holds the model's uncertain numbers, their groups and their draws;
- :mod:`sim.montecarlo` runs replications into per-rule totals; :mod:`sim.executors` says where
  (in this process or on Dask);
- :mod:`sim.process` is the SimPy model of application, review and payment;
- :mod:`sim.budget` holds the coverage, top-up, reallocation and CVaR budget LPs;
- :mod:`sim.sensitivity` computes Sobol indices over the assumption groups; :mod:`sim.headline` the
  decision-grade answer per domain;
- :mod:`sim.scenario` applies scenario overrides;
- :mod:`sim.pipeline` runs a scenario through the stages and writes the run folder
  (:mod:`sim.results` reads it back); :mod:`sim.report` only draws the run's tables, :mod:`sim.compare`
  sets runs side by side, :mod:`sim.export` writes a workbook; :mod:`sim.language` holds the words
  (Simplified Chinese by default, Traditional Chinese, English);
- :mod:`sim.cli` is the ``fiscalsim`` command: it parses, calls the pipeline, and prints.

Money is in 萬元 throughout.
"""

__version__ = "0.1.0"
