"""The loops: pretraining, linear probe and kNN evaluation."""
