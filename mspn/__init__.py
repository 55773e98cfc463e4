"""MSPN video prediction: model, data, training and evaluation (needs torch)."""

__version__ = "0.1.0"
