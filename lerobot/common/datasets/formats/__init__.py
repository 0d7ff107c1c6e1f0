"""Readers for each on-disk LeRobot format. Each module exposes `load_metadata(root, version)`."""
