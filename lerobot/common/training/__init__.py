"""Training machinery shared by lerobot/scripts/train.py: checkpoints, sampling, logging, distributed runs."""
