"""Distributed sweeps of CKPD trials: spec, Ray Tune trainable, Optuna pruning, Parquet results, CLI."""
