"""Pretrained torchvision weights: URLs, metadata, download cache and loading.

Each zoo model with a torchvision counterpart has its ``IMAGENET1K_V1`` checkpoint listed
in :data:`WEIGHTS` next to what a user needs with it, as torchvision keeps them beside the
builder: the preprocessing preset, the ImageNet categories, torchvision's published
accuracy and the parameter count. :func:`load` turns a local file or a URL into Flax
variables; a URL is downloaded once into the cache (``$JAXVISION_HOME`` or
``~/.cache/jaxvision``) and checked against the sha256 prefix in its file name, as
``torch.hub`` does.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from jaxvision.weights.convert import CheckpointMismatchError, check_fit, convert_torchvision
from jaxvision.weights.io import read
from jaxvision.weights.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageClassificationPreset,
    imagenet_classes,
)

_BASE = "https://download.pytorch.org/models/"
# torch.hub's rule: the hex run between the last '-' and the first '.' of the file name is
# a prefix of the file's sha256.
_HASH_RE = re.compile(r"-([a-f0-9]*)\.")


class _PublishedFile:
    """What every weights entry derives from its ``url``: the file name and the sha256
    prefix torchvision puts in it."""

    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str | None:
        return hash_prefix(self.file_name)


@dataclass(frozen=True)
class WeightsInfo(_PublishedFile):
    """One pretrained checkpoint and what goes with it (torchvision's ``Weights.meta``).

    Attributes:
      model: the zoo builder name (``"resnet50"``).
      url: where torchvision publishes the checkpoint.
      num_params: parameters of the model these weights fill (torchvision's count).
      acc1, acc5: torchvision's ImageNet-1K validation accuracy (%) with these weights and
        ``transforms`` (single 224 crop; 299 for inception_v3).
      gmac: multiply-accumulates of one forward pass at the crop size, in 10^9.
      resize_size, crop_size: the preprocessing preset.
      config: builder keyword arguments the weights were trained for (GoogLeNet and
        Inception v3 normalize their input differently: ``transform_input=True``).
    """

    model: str
    url: str
    num_params: int
    acc1: float
    acc5: float
    gmac: float
    resize_size: int = 256
    crop_size: int = 224
    config: Mapping[str, Any] = field(default_factory=dict)

    def transforms(self) -> ImageClassificationPreset:
        """The preprocessing these weights expect: PIL/array -> ``[S, S, 3] float32``."""
        return ImageClassificationPreset(crop_size=self.crop_size, resize_size=self.resize_size)

    @property
    def categories(self) -> tuple[str, ...]:
        return imagenet_classes()


def _w(model: str, file: str, num_params: int, acc1: float, acc5: float, gmac: float,
       **kw: Any) -> WeightsInfo:
    return WeightsInfo(model, _BASE + file, num_params, acc1, acc5, gmac, **kw)


# torchvision 0.29 ``<Model>_Weights.IMAGENET1K_V1``; figures from its ``meta`` (as in
# REFERENCE.md).
WEIGHTS: dict[str, WeightsInfo] = {w.model: w for w in [
    _w("alexnet", "alexnet-owt-7be5be79.pth", 61_100_840, 56.522, 79.066, 0.714),
    _w("vgg11", "vgg11-8a719046.pth", 132_863_336, 69.020, 88.628, 7.609),
    _w("vgg11_bn", "vgg11_bn-6002323d.pth", 132_868_840, 70.370, 89.810, 7.609),
    _w("vgg13", "vgg13-19584684.pth", 133_047_848, 69.928, 89.246, 11.308),
    _w("vgg13_bn", "vgg13_bn-abd245e5.pth", 133_053_736, 71.586, 90.374, 11.308),
    _w("vgg16", "vgg16-397923af.pth", 138_357_544, 71.592, 90.382, 15.470),
    _w("vgg16_bn", "vgg16_bn-6c64b313.pth", 138_365_992, 73.360, 91.516, 15.470),
    _w("vgg19", "vgg19-dcbb9e9d.pth", 143_667_240, 72.376, 90.876, 19.632),
    _w("vgg19_bn", "vgg19_bn-c79401a0.pth", 143_678_248, 74.218, 91.842, 19.632),
    _w("googlenet", "googlenet-1378be20.pth", 6_624_904, 69.778, 89.530, 1.498,
       config={"transform_input": True}),
    _w("inception_v3", "inception_v3_google-0cc3c7bd.pth", 27_161_264, 77.294, 93.450, 5.713,
       resize_size=342, crop_size=299, config={"transform_input": True}),
    _w("resnet18", "resnet18-f37072fd.pth", 11_689_512, 69.758, 89.078, 1.814),
    _w("resnet34", "resnet34-b627a593.pth", 21_797_672, 73.314, 91.420, 3.664),
    _w("resnet50", "resnet50-0676ba61.pth", 25_557_032, 76.130, 92.862, 4.089),
    _w("resnet101", "resnet101-63fe2227.pth", 44_549_160, 77.374, 93.546, 7.801),
    _w("resnet152", "resnet152-394f9c45.pth", 60_192_808, 78.312, 94.046, 11.514),
    _w("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth", 25_028_904, 77.618, 93.698, 4.230),
    _w("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth", 88_791_336, 79.312, 94.526,
       16.414),
    # The only V1 entry trained with torchvision's newer recipe (hence resize 232).
    _w("resnext101_64x4d", "resnext101_64x4d-173b62eb.pth", 83_455_272, 83.246, 96.454,
       15.46, resize_size=232),
    _w("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", 68_883_240, 78.468, 94.086, 11.398),
    _w("wide_resnet101_2", "wide_resnet101_2-32ee1156.pth", 126_886_696, 78.848, 94.284,
       22.753),
    _w("densenet121", "densenet121-a639ec97.pth", 7_978_856, 74.434, 91.972, 2.834),
    _w("densenet161", "densenet161-8d451a50.pth", 28_681_000, 77.138, 93.560, 7.728),
    _w("densenet169", "densenet169-b2777c0a.pth", 14_149_480, 75.600, 92.806, 3.360),
    _w("densenet201", "densenet201-c1103571.pth", 20_013_928, 76.896, 93.370, 4.291),
]}


def weights_info(model: str) -> WeightsInfo:
    """The :class:`WeightsInfo` of ``model``; ``KeyError`` naming the models that have one."""
    try:
        return WEIGHTS[model]
    except KeyError:
        raise KeyError(f"no torchvision weights are known for {model!r}; pretrained weights "
                       f"exist for: {', '.join(WEIGHTS)}") from None


def hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix a torch.hub file name carries (``resnet18-f37072fd.pth``), if any."""
    m = _HASH_RE.search(file_name)
    return m.group(1) if m and m.group(1) else None


def cache_dir() -> Path:
    """Where downloads go: ``$JAXVISION_HOME/checkpoints`` or ``~/.cache/jaxvision/...``."""
    root = os.environ.get("JAXVISION_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxvision")
    return Path(root) / "checkpoints"


class DownloadError(OSError):
    """A checkpoint could not be fetched (offline, HTTP error) or failed its hash check.

    An ``OSError``, as the network errors it reports are (``jaxvision.cli`` shows OSErrors
    to the user as input errors, without a traceback)."""


def download(url: str, directory: str | os.PathLike | None = None, *, progress: bool = True,
             check_hash: bool = True) -> Path:
    """Downloads ``url`` into ``directory`` (default :func:`cache_dir`) unless already there.

    The file is streamed to a temporary name in the same directory, its sha256 compared
    with the prefix in the file name (when it has one), then renamed into place, so the
    cache never holds a partial or corrupt file.

    Returns:
      The path of the cached file.

    Raises:
      DownloadError: offline or the server failed (the message says to pass a local file),
        or the hash does not match.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"URL {url!r} does not name a file")
    dst = directory / name
    if dst.is_file():
        return dst
    directory.mkdir(parents=True, exist_ok=True)
    expected = hash_prefix(name) if check_hash else None
    try:
        response = urllib.request.urlopen(url, timeout=30)  # noqa: S310 (http(s)/file URLs)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: the server answered HTTP {e.code} "
                            f"({e.reason})") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"could not download {url} ({reason}). If this machine is offline, download the "
            "file elsewhere and pass its local path instead: "
            f"jaxvision.weights.load(model, '/path/to/{name}') or --weights /path/to/{name}"
        ) from None
    from tqdm.auto import tqdm

    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".partial", dir=directory)
    sha = hashlib.sha256()
    try:
        with response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    sha.update(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DownloadError(f"download of {url} stopped after {out.tell()} of "
                                    f"{total} bytes")
        digest = sha.hexdigest()
        if expected and not digest.startswith(expected):
            raise DownloadError(f"{url}: sha256 {digest} does not start with {expected!r} "
                                "(the hash in the file name); the download is corrupt or "
                                "not the published file")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst


def _is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https", "file", "ftp")


def _densenet_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # The published DenseNet files predate a rename in torchvision: 'norm.1' -> 'norm1'
    # (torchvision's densenet._load_state_dict does the same).
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean"
        r"|running_var))$")
    out = {}
    for k, v in state_dict.items():
        m = pattern.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _flax_layout(flat: Mapping[str, np.ndarray]) -> bool:
    return bool(flat) and all(k.startswith(("params/", "batch_stats/")) for k in flat)


def _check_flax_variables(model: str, flat: Mapping[str, np.ndarray],
                          config: Mapping[str, Any]) -> dict[str, Any]:
    from jaxvision.models import get_model
    from jaxvision.weights.convert import variable_shapes

    module = get_model(model, **config)
    template = {"/".join(map(str, k)): v
                for k, v in traverse_util.flatten_dict(dict(variable_shapes(module))).items()}
    missing = sorted(set(template) - set(flat))
    unexpected = sorted(set(flat) - set(template))
    wrong = [f"{k}: file {tuple(flat[k].shape)}, model {tuple(template[k].shape)}"
             for k in sorted(set(flat) & set(template))
             if tuple(flat[k].shape) != tuple(template[k].shape)]
    check_fit(f"variables do not fit {model}", missing, unexpected, wrong)
    return traverse_util.unflatten_dict(
        {tuple(k.split("/")): np.asarray(v, template[k].dtype) for k, v in flat.items()})


def load(
    name: str,
    path_or_url: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **config: Any,
) -> dict[str, Any]:
    """Flax variables of the zoo model ``name`` from a checkpoint file or URL.

    Args:
      name: zoo builder name (``"resnet50"``).
      path_or_url: a local file -- torchvision ``.pth`` (zip or legacy), ``.safetensors``
        (torch keys, or Flax variables as written by ``jaxvision convert``) or Flax
        ``.msgpack`` --, or an URL, or None for the published torchvision weights of
        ``name``. URLs are downloaded once into the cache and hash-checked.
      cache_dir: download directory (default ``$JAXVISION_HOME/checkpoints``).
      progress: show a progress bar while downloading.
      **config: builder configuration (``num_classes`` is inferred from the checkpoint).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (numpy arrays) for
      ``get_model(name, **config).apply(variables, images, train=False)``.

    Raises:
      CheckpointMismatchError: the checkpoint does not fit the model (names the file and
        lists the keys).
      DownloadError: offline, HTTP failure or hash mismatch.
      CheckpointError: the file is not a checkpoint, or is unsafe.
    """
    if path_or_url is None:
        path_or_url = weights_info(name).url
    source = str(path_or_url)
    if _is_url(source):
        path = download(source, cache_dir, progress=progress)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {path} does not exist")
    flat = read(path)
    try:
        return _variables(name, flat, config)
    except CheckpointMismatchError as e:  # name the file: the keys alone do not say which
        raise CheckpointMismatchError(f"{path}: {e}", e.missing, e.unexpected,
                                      e.wrong_shape) from None


def _variables(name: str, flat: dict[str, np.ndarray], config: dict[str, Any]
               ) -> dict[str, Any]:
    if _flax_layout(flat):
        if "num_classes" not in config:
            from jaxvision.weights.convert import infer_num_classes

            heads = {k: v for k, v in flat.items() if k.startswith("params/")
                     and k.endswith("/kernel") and v.ndim == 2}
            n = infer_num_classes({k.replace("/kernel", ".weight"): v.T
                                   for k, v in heads.items()})
            if n is not None:
                config["num_classes"] = n
        return _check_flax_variables(name, flat, config)
    if name.startswith("densenet"):
        flat = _densenet_keys(flat)
    return convert_torchvision(name, flat, **config)


# Semantic segmentation (issue 10): torchvision 0.29 ``<Model>_Weights.COCO_WITH_VOC_LABELS_V1``
# of the dilated-ResNet FCN and DeepLabV3 (jaxvision.segmentation.torchvision_models), trained
# on the COCO images of the 20 Pascal VOC categories; figures from each weights' ``meta``.
VOC_CATEGORIES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")


@dataclass(frozen=True)
class SegmentationWeightsInfo(_PublishedFile):
    """One torchvision segmentation checkpoint (``COCO_WITH_VOC_LABELS_V1``) and its meta.

    Attributes:
      model: the zoo builder name (``"fcn_resnet50"``).
      url: where torchvision publishes the checkpoint.
      num_params: parameters of the model these weights fill (aux head included).
      miou, pixel_acc: torchvision's COCO val2017 (VOC labels) mean IoU and pixel accuracy (%).
      gflops: torchvision's ``_ops`` at 520x520.
      resize_size: torchvision's ``SemanticSegmentation`` preset: the shorter side resized
        (bilinear) to this, then normalized with :attr:`mean` and :attr:`std`.
      config: builder keyword arguments the weights fit (``num_classes=21, aux_loss=True``).
    """

    model: str
    url: str
    num_params: int
    miou: float
    pixel_acc: float
    gflops: float
    resize_size: int = 520
    config: Mapping[str, Any] = field(
        default_factory=lambda: {"num_classes": len(VOC_CATEGORIES), "aux_loss": True})
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def categories(self) -> tuple[str, ...]:
        return VOC_CATEGORIES


SEGMENTATION_WEIGHTS: dict[str, SegmentationWeightsInfo] = {w.model: w for w in [
    SegmentationWeightsInfo("fcn_resnet50", _BASE + "fcn_resnet50_coco-1167a1af.pth",
                            35_322_218, 60.5, 91.4, 152.717),
    SegmentationWeightsInfo("fcn_resnet101", _BASE + "fcn_resnet101_coco-7ecb50ca.pth",
                            54_314_346, 63.7, 91.9, 232.738),
    SegmentationWeightsInfo("deeplabv3_resnet50",
                            _BASE + "deeplabv3_resnet50_coco-cd0a2569.pth",
                            42_004_074, 66.4, 92.4, 178.722),
    SegmentationWeightsInfo("deeplabv3_resnet101",
                            _BASE + "deeplabv3_resnet101_coco-586e9e4e.pth",
                            60_996_202, 67.4, 92.4, 258.743),
]}


def _lookup(table: dict[str, Any], model: str, kind: str) -> Any:
    try:
        return table[model]
    except KeyError:
        raise KeyError(f"no torchvision {kind} weights are known for {model!r}; "
                       f"known: {', '.join(table)}") from None


def segmentation_weights_info(model: str) -> SegmentationWeightsInfo:
    """The :class:`SegmentationWeightsInfo` of ``model``; ``KeyError`` naming those known."""
    return _lookup(SEGMENTATION_WEIGHTS, model, "segmentation")


# Object detection (issue 9): torchvision 0.29 ``<Model>_Weights.COCO_V1`` of the Faster R-CNNs
# (jaxvision.detection.faster_rcnn); figures from each weights' ``meta``. The 91 categories
# are torchvision's ``_COCO_CATEGORIES`` (COCO's 80 plus "N/A" for the unused ids, index 0
# the background), so a label is the COCO category id.
COCO_CATEGORIES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")


@dataclass(frozen=True)
class DetectionWeightsInfo(_PublishedFile):
    """One torchvision detection checkpoint (``COCO_V1``) and its meta.

    Attributes:
      model: the zoo builder name (``"fasterrcnn_resnet50_fpn"``).
      url: where torchvision publishes the checkpoint.
      num_params: torchvision's parameter count (``FrozenBatchNorm2d`` affine excluded: they
        are buffers there; the v1 model's variables hold 53,120 more, the frozen BatchNorm
        scales and biases).
      box_map: torchvision's COCO val2017 box AP (%).
      gflops: torchvision's ``_ops``.
      file_size_mb: torchvision's ``_file_size``.
      min_size, max_size: the ``GeneralizedRCNNTransform`` resize the weights expect.
      config: builder keyword arguments the weights fit (``num_classes=91``, and
        ``frozen_bn_eps=0.0`` for the v1 file): ``load(model, url, **config)``.
      frozen_bn_eps: the FrozenBatchNorm epsilon torchvision sets when it loads the weights
        (``overwrite_eps(model, 0.0)`` for the v1 COCO_V1 file), None when unchanged.
    """

    model: str
    url: str
    num_params: int
    box_map: float
    gflops: float
    file_size_mb: float
    min_size: int = 800
    max_size: int = 1333
    config: Mapping[str, Any] = field(
        default_factory=lambda: {"num_classes": len(COCO_CATEGORIES)})
    frozen_bn_eps: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def categories(self) -> tuple[str, ...]:
        return COCO_CATEGORIES


DETECTION_WEIGHTS: dict[str, DetectionWeightsInfo] = {w.model: w for w in [
    DetectionWeightsInfo("fasterrcnn_resnet50_fpn",
                         _BASE + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
                         41_755_286, 37.0, 134.38, 159.743, frozen_bn_eps=0.0,
                         config={"num_classes": len(COCO_CATEGORIES), "frozen_bn_eps": 0.0}),
    DetectionWeightsInfo("fasterrcnn_resnet50_fpn_v2",
                         _BASE + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
                         43_712_278, 46.7, 280.371, 167.104),
]}


def detection_weights_info(model: str) -> DetectionWeightsInfo:
    """The :class:`DetectionWeightsInfo` of ``model``; ``KeyError`` naming those known."""
    return _lookup(DETECTION_WEIGHTS, model, "detection")
