"""Probabilistic programming for neural circuit models."""
