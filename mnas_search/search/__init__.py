"""Searching: the multi-trial search, its Pareto archive and the one-shot (supernet) search."""
