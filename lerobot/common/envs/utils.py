"""Turn gym observations into the tensors a policy trained on a LeRobotDataset expects.

Simulators speak their own dialect (`pixels`, `agent_pos`, `environment_state`; images as HWC uint8), while
policies are trained on dataset frames (`observation.image`, `observation.state`, ...; images CHW float in
[0, 1]). `preprocess_observation` is the single translation point between the two, so that a policy sees the
same keys, layout and value range at evaluation time as it did during training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# gym observation key -> dataset key (images are handled separately: they may be an array or a dict of cameras).
STATE_KEYS = {"agent_pos": "observation.state", "environment_state": "observation.environment_state"}
IMAGE_KEY = "observation.image"
IMAGES_PREFIX = "observation.images."


def _to_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(
        f"Observation {name!r} must be a numpy array or a torch tensor, got {type(value).__name__}."
    )


def _image_to_tensor(value: Any, name: str) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1], refusing anything that would silently mis-scale."""
    img = _to_numpy(value, name)
    if img.dtype != np.uint8:
        raise TypeError(
            f"Image {name!r} must be uint8 (HWC, 0-255, as gym envs return it), got dtype {img.dtype}. "
            "Float images would be divided by 255 a second time."
        )
    if img.ndim != 4 or img.shape[-1] != 3:
        hint = " (unbatched? make_env returns a vector env that adds the batch axis)" if img.ndim == 3 else ""
        raise ValueError(
            f"Image {name!r} must have shape (batch, height, width, 3), got {tuple(img.shape)}{hint}. "
            "Channel-first images are not accepted: envs return channel-last."
        )
    tensor = torch.from_numpy(np.ascontiguousarray(img))
    return tensor.permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)


def _vector_to_tensor(value: Any, name: str) -> torch.Tensor:
    vec = _to_numpy(value, name)
    if vec.ndim != 2:
        raise ValueError(f"Observation {name!r} must have shape (batch, dim), got {tuple(vec.shape)}.")
    if not (np.issubdtype(vec.dtype, np.floating) or np.issubdtype(vec.dtype, np.integer)):
        raise TypeError(f"Observation {name!r} must be numeric, got dtype {vec.dtype}.")
    return torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))


def preprocess_observation(observations: Mapping[str, Any] | np.ndarray) -> dict[str, torch.Tensor]:
    """Map a batched gym observation to LeRobot dataset keys and tensor conventions.

    Mapping (the same as the datasets recorded from these envs):
    - `pixels` as an array -> `observation.image`; `pixels` as a dict -> `observation.images.<camera>`;
      a bare image array (obs_type `pixels` of PushT / XArm) is treated as `pixels`;
    - `agent_pos` -> `observation.state`; `environment_state` -> `observation.environment_state`.

    Images must be (B, H, W, 3) uint8 and come out (B, 3, H, W) float32 in [0, 1]; vectors come out (B, D)
    float32. Other keys are ignored. Raises when no known key is present (e.g. obs_type `state`, whose flat
    vector has no names) or when an image has the wrong dtype or layout.
    """
    if isinstance(observations, (np.ndarray, torch.Tensor)):
        if observations.ndim != 4:
            raise ValueError(
                f"A bare observation array of shape {tuple(observations.shape)} cannot be mapped to dataset keys: "
                "only a batch of images (obs_type 'pixels') is accepted bare. For state, use an obs_type that "
                "names its parts, e.g. 'environment_state_agent_pos' or 'pixels_agent_pos'."
            )
        observations = {"pixels": observations}
    if not isinstance(observations, Mapping):
        raise TypeError(f"Expected a dict of observations, got {type(observations).__name__}.")

    out: dict[str, torch.Tensor] = {}
    if "pixels" in observations:
        pixels = observations["pixels"]
        if isinstance(pixels, Mapping):
            if not pixels:
                raise ValueError("Observation 'pixels' is an empty dict: no camera to read.")
            for camera, image in pixels.items():
                out[f"{IMAGES_PREFIX}{camera}"] = _image_to_tensor(image, f"pixels.{camera}")
        else:
            out[IMAGE_KEY] = _image_to_tensor(pixels, "pixels")
    for gym_key, dataset_key in STATE_KEYS.items():
        if gym_key in observations:
            out[dataset_key] = _vector_to_tensor(observations[gym_key], gym_key)
    if not out:
        raise KeyError(
            f"None of the known observation keys ('pixels', 'agent_pos', 'environment_state') are present; got "
            f"{sorted(observations)}. Is the env's obs_type one that LeRobot policies can read?"
        )
    batch_sizes = {key: value.shape[0] for key, value in out.items()}
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"Observations disagree on the batch size: {batch_sizes}.")
    return out
