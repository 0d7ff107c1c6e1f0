"""Simulation environments (PushT, ALOHA, XArm) behind one factory, and the observation mapping to dataset keys.

Importing this package does not import gymnasium or any simulator: they are optional extras
(`pip install -e ".[pusht]"`, `".[aloha]"`, `".[xarm]"`), imported by `make_env` when an env is built.
"""

from lerobot.common.envs.factory import SIMS, make_env
from lerobot.common.envs.utils import preprocess_observation

__all__ = ["SIMS", "make_env", "preprocess_observation"]
