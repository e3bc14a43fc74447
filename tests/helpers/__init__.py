"""Helpers only the tests use: synthetic broken datasets, single-file checkpoints, notebook execution."""
