"""Diffusion Policy (Chi et al., 2023): `DiffusionConfig` and `DiffusionPolicy`, imported from their modules."""
