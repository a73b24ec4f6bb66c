"""jaxvision: the classic convolutional networks of computer vision in JAX/Flax.

Subpackages: ``models`` (the classification zoo), ``weights`` (torchvision checkpoints),
``ops`` (boxes, NMS, RoI pooling, unpooling), ``data`` (datasets and on-device
augmentation), ``train`` (the sharded training engine).
"""

__version__ = "0.1.0"
