"""Datasets: the registry of dataset names, their splits and the input pipeline."""
