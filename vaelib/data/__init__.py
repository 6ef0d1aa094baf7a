"""Datasets as in-memory uint8 tensors: the registry (torchvision and embedded) and the shapes renderer."""
