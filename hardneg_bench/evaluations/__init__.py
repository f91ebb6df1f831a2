"""Evaluations of a pretrained encoder: one module per protocol (linear probe, kNN, few-shot
episodes), each with its stage configs and its computation, named in :mod:`.registry`."""
