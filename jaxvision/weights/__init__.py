"""torchvision checkpoints: safe reading, conversion to Flax variables, download and cache."""

from jaxvision.weights.convert import (
    CheckpointMismatchError,
    convert_state_dict,
    convert_torchvision,
    torch_to_flax,
)

__all__ = ["CheckpointMismatchError", "convert_state_dict", "convert_torchvision", "torch_to_flax"]
