"""Torch modules. Each scorer's forward takes the feature tensors named in cascade.specs, in order."""
