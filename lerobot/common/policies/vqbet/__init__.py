"""VQ-BeT (Lee et al., 2024): `VQBeTConfig` and `VQBeTPolicy`, imported from their modules."""
