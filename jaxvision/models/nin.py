"""Network in Network, from "Network In Network" (Lin, Chen, Yan; ICLR 2014), as the authors
released it in the Caffe model zoo.

Each "mlpconv" block is a spatial convolution followed by two 1x1 convolutions (the paper's
cross-channel parametric pooling, Caffe layers ``cccp*``), all with ReLU. There are no
dense layers: the last block outputs one map per class and global average pooling turns
it into the logits.

:func:`nin`, the CIFAR-10 model (Caffe zoo ``cifar10_nin``, 32x32 input)::

    conv1 192 5x5 pad 2, cccp1 160, cccp2 96, max pool 3x3/2, dropout 0.5    32 -> 16
    conv2 192 5x5 pad 2, cccp3 192, cccp4 192, avg pool 3x3/2, dropout 0.5   16 -> 8
    conv3 192 3x3 pad 1, cccp5 192, cccp6 num_classes, global avg pool       8 -> 1

966,986 parameters for 10 classes: conv1 14,592; cccp1 30,880; cccp2 15,456; conv2 460,992;
cccp3 37,056; cccp4 37,056; conv3 331,968; cccp5 37,056; cccp6 1,930.

:func:`nin_imagenet`, the ImageNet model (Caffe zoo ``nin_imagenet``, 224x224 input)::

    conv1 96 11x11 /4, cccp1 96, cccp2 96, max pool 3x3/2                    224 -> 54 -> 27
    conv2 256 5x5 pad 2, cccp3 256, cccp4 256, max pool 3x3/2                27 -> 13
    conv3 384 3x3 pad 1, cccp5 384, cccp6 384, max pool 3x3/2, dropout 0.5   13 -> 6
    conv4-1024 1024 3x3 pad 1, cccp7-1024 1024, cccp8-1024 num_classes,
    global avg pool (Caffe: 6x6 average pool)                                6 -> 1

7,595,176 parameters for 1000 classes (the paper's "29 MB" model): conv1 34,944; cccp1 and
cccp2 9,312 each; conv2 614,656; cccp3 and cccp4 65,792 each; conv3 885,120; cccp5 and cccp6
147,840 each; conv4-1024 3,539,968; cccp7-1024 1,049,600; cccp8-1024 1,025,000.

As in both Caffe definitions, the last 1x1 conv is followed by a ReLU before the global
pooling, and every pooling layer rounds its output size *up* (Caffe's only mode, torch's
``ceil_mode=True``): 32 -> 16 -> 8 needs it (floor mode gives 15 -> 7), and so does the
6x6 map of the ImageNet model. Module names are the Caffe layer names (``conv1``,
``cccp1``, ..., ``conv4-1024``), so a Caffe ``.caffemodel`` maps one to one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision import checks
from jaxvision.models import layers
from jaxvision.models.registry import register_model

# One mlpconv block: (name, out_channels, kernel, stride, padding) for the spatial conv and
# its two 1x1 convs (channels None means num_classes), then the pooling after it ("max",
# "avg" or None for the global average pool at the end) and whether dropout follows.
Conv = tuple[str, int | None, int, int, int]
Block = tuple[tuple[Conv, Conv, Conv], str | None, bool]

CIFAR10: tuple[Block, ...] = (
    ((("conv1", 192, 5, 1, 2), ("cccp1", 160, 1, 1, 0), ("cccp2", 96, 1, 1, 0)), "max", True),
    ((("conv2", 192, 5, 1, 2), ("cccp3", 192, 1, 1, 0), ("cccp4", 192, 1, 1, 0)), "avg", True),
    ((("conv3", 192, 3, 1, 1), ("cccp5", 192, 1, 1, 0), ("cccp6", None, 1, 1, 0)), None, False),
)
IMAGENET: tuple[Block, ...] = (
    ((("conv1", 96, 11, 4, 0), ("cccp1", 96, 1, 1, 0), ("cccp2", 96, 1, 1, 0)), "max", False),
    ((("conv2", 256, 5, 1, 2), ("cccp3", 256, 1, 1, 0), ("cccp4", 256, 1, 1, 0)), "max",
     False),
    ((("conv3", 384, 3, 1, 1), ("cccp5", 384, 1, 1, 0), ("cccp6", 384, 1, 1, 0)), "max", True),
    ((("conv4-1024", 1024, 3, 1, 1), ("cccp7-1024", 1024, 1, 1, 0),
      ("cccp8-1024", None, 1, 1, 0)), None, False),
)


def min_input_size(blocks: Sequence[Block]) -> int:
    """Smallest input side for which every layer has a non-empty output (1x1 at the end)."""
    size = 1
    for convs, pool, _ in reversed(blocks):
        if pool is not None:
            # A 3x3 stride-2 ceil-mode pool gives n outputs from 2n inputs: ceil mode lets
            # the last window hang past the input (torch only drops a window that would
            # *start* past it), so even one output needs just 2 inputs.
            size = 2 * size
        for _, _, k, s, p in reversed(convs):
            size = (size - 1) * s + k - 2 * p
    return size


class NiN(nn.Module):
    """Network in Network: ``images: [N, H, W, 3] float32 -> logits [N, num_classes]``.

    Attributes:
      blocks: the mlpconv blocks (``CIFAR10`` or ``IMAGENET``).
      num_classes: channels of the last 1x1 conv, i.e. the number of logits.
      dropout: dropout rate where the Caffe model has a dropout layer (active when
        ``train``; needs a ``'dropout'`` rng).
      dtype: computation dtype.
      param_dtype: parameter dtype.

    Fully convolutional: any input at least ``min_size`` works, and ``features`` gives the
    ``[N, h, w, num_classes]`` class-score maps before the global average pool.
    """

    blocks: Sequence[Block] = CIFAR10
    num_classes: int = 10
    dropout: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    # No dense layers: nothing to convolutionize and no NCHW flatten to permute.
    dense_names: ClassVar[tuple[str, ...]] = ()
    adaptive_pool: ClassVar[tuple[int, int] | None] = None
    torch_flatten_shapes: ClassVar[dict[str, tuple[int, int, int]]] = {}

    @property
    def default_input_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        return (32, 32, 3) if self.blocks == CIFAR10 else (224, 224, 3)

    @property
    def model_name(self) -> str:
        return "nin" if self.blocks == CIFAR10 else "nin_imagenet"

    @nn.compact
    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """The mlpconv blocks: ``[N, H, W, 3] -> [N, h, w, num_classes]`` (ReLU'd scores)."""
        checks.check_images(x, model=self.model_name, channels=3,
                            min_size=min_input_size(self.blocks))
        x = x.astype(self.dtype)
        for convs, pool, dropout in self.blocks:
            for name, c, k, s, p in convs:
                # Caffe's NiN initializes with small Gaussians (std 0.01-0.05); we keep the
                # zoo's He init, which trains these ReLU stacks from scratch without tuning.
                x = layers.conv2d(c or self.num_classes, k, s, p, dtype=self.dtype,
                                  param_dtype=self.param_dtype, name=name)(x)
                x = nn.relu(x)
            if pool == "max":
                x = layers.max_pool(x, 3, 2, ceil_mode=True)
            elif pool == "avg":
                x = layers.avg_pool(x, 3, 2, ceil_mode=True)
            if dropout:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """``images: [N, H, W, 3] float -> logits [N, num_classes]`` in ``dtype``."""
        x = self.features(x, train=train)
        # Global average pooling replaces the dense classifier (the paper's Section 3.2).
        return jnp.mean(x, axis=(1, 2))


@register_model
def nin(**kwargs: Any) -> NiN:
    """NiN for CIFAR-10 (32x32 input), 966,986 parameters with 10 classes.

    Keyword arguments are :class:`NiN` fields (``num_classes``, ``dropout``, ``dtype``,
    ``param_dtype``).
    """
    return NiN(blocks=CIFAR10, **kwargs)


@register_model
def nin_imagenet(**kwargs: Any) -> NiN:
    """NiN for ImageNet (224x224 input), 7,595,176 parameters with 1000 classes.

    Keyword arguments are :class:`NiN` fields.
    """
    return NiN(blocks=IMAGENET, **{"num_classes": 1000, **kwargs})
