"""Tiny datasets made by the tests themselves, through the real writer."""

from pathlib import Path

import numpy as np

from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

FPS = 10


def features(camera_dtype: str = "video", size: tuple[int, int] = (24, 32)) -> dict:
    h, w = size
    return {
        "observation.image": {
            "dtype": camera_dtype,
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }


def frame_image(episode: int, i: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A frame whose colour encodes (episode, frame index), so a wrong frame is easy to spot after decoding."""
    h, w = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = (i * 12) % 256
    img[..., 1] = (episode * 60 + 20) % 256
    img[..., 2] = 128
    return img


def make_frame(episode: int, i: int, n: int, size=(24, 32)) -> dict:
    return {
        "observation.image": frame_image(episode, i, size),
        "observation.state": np.array([episode, i, episode * 100 + i], dtype=np.float32),
        "action": np.array([i, -i], dtype=np.float32),
        "next.reward": np.float32(i / n),
        "next.done": i == n - 1,
    }


def record(
    root: Path,
    lengths=(7, 5, 9),
    version: str = "v3.0",
    camera_dtype: str = "video",
    repo_id: str = "test/tiny",
    size=(24, 32),
    **create_kwargs,
):
    writer = LeRobotDataset.create(
        repo_id,
        fps=FPS,
        features=features(camera_dtype, size),
        root=root,
        codebase_version=version,
        **create_kwargs,
    )
    for ep, n in enumerate(lengths):
        for i in range(n):
            writer.add_frame(make_frame(ep, i, n, size))
        writer.save_episode(task=f"task {ep % 2}")
    writer.finalize()
    return writer
