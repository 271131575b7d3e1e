"""Tests written for mutants that survived the rest of the suite (see tools/mutation.py)."""
