"""Experiment suites (`trainers/experiments.py`): what a suite runs, noise
robustness of a run, and the reports written from the runs."""
