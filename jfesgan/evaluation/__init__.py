"""Evaluators: held-out scores of recognisers and generators, the independent judge, sample grids,
the run's summary and its HTML report, and the trained networks of a finished run restored for
use."""
