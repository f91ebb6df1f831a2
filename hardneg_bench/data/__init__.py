"""Datasets (real loaders and the built-in generated ones) and their augmentations.

The registry is :mod:`hardneg_bench.data.registry`; the interface every dataset hands to the
engine is :mod:`hardneg_bench.data.base`.
"""
