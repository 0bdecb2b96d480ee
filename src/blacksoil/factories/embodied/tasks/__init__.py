"""Embodied suite task file and its generator."""
