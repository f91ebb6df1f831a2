"""hardneg-bench: reproduce the paper tables of hard-negative contrastive learning."""

__version__ = "0.1.0"
