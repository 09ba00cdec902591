"""Torch-side models: networks, preconditioning, analytic denoisers, checkpoints."""
