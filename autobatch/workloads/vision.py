"""torchvision classification models (weights none) on image data.

Data sources: ``fake`` (torchvision FakeData: random images and random labels, for
probing and profiling only), a CIFAR-10 folder in its standard on-disk format
(``cifar-10-batches-py``), or an ImageFolder tree (``PATH/train`` + ``PATH/val``, or
one tree of which a seeded 10% is held out for validation).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from autobatch.errors import DataError, WorkloadError
from autobatch.hyperparams import Recipe
from autobatch.workloads.kinds import KindOption, WorkloadKind
from autobatch.workloads.workload import Workload

log = logging.getLogger(__name__)

FAKE_TRAIN_SIZE = 2048
FAKE_VAL_SIZE = 64  # random labels: evaluation only needs to exercise the code
MIN_SIZE = 8  # pixels
SIZE_SAMPLES = 64  # images whose size is read to infer an ImageFolder's image size
VAL_FRACTION = 0.1
SPLIT_SEED = 0
# torchvision's ImageNet classification recipe: SGD, LR 0.1, momentum 0.9, batch 256.
REFERENCE = Recipe(batch_size=256, lr=0.1, momentum=0.9, optimizer="sgd")
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def default_workers() -> int:
    """DataLoader workers: leave one core to the training process."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def torchvision_workload(model_name: str, *, data: str | None, image_size: int | None,
                         num_classes: int | None) -> Workload:
    import torchvision

    if model_name not in classification_models():
        raise WorkloadError(
            f"unknown torchvision classification model {model_name!r}; see "
            "torchvision.models.list_models(module=torchvision.models)")
    if data is None:
        raise DataError(
            f"torchvision:{model_name} needs --data: an ImageFolder path, a CIFAR-10 "
            "folder, or 'fake'")
    if image_size is not None and image_size < MIN_SIZE:
        raise DataError(f"image size must be >= {MIN_SIZE}, got {image_size}")
    if data == "fake":
        size = image_size or 224
        classes = num_classes or 10
        train, val = _fake(size, classes)
        source = f"fake {size}x{size}, {classes} classes"
    else:
        train, val, classes = _from_path(Path(data), image_size)
        if num_classes is not None and num_classes != classes:
            raise DataError(f"--num-classes {num_classes} but {data} has {classes} classes")
        source = data

    def model_factory() -> torch.nn.Module:
        return torchvision.models.get_model(model_name, weights=None, num_classes=classes)

    return Workload(
        name=f"torchvision:{model_name}", model_factory=model_factory, train_data=train,
        val_data=val, reference=REFERENCE, num_workers=default_workers(),
        eval_batch_size=256, description=f"torchvision {model_name} on {source}")


def _fake(size: int, classes: int) -> tuple[Dataset, Dataset]:
    from torchvision import datasets, transforms

    to_tensor = transforms.ToTensor()
    shape = (3, size, size)
    train = datasets.FakeData(FAKE_TRAIN_SIZE, shape, classes, to_tensor, random_offset=0)
    val = datasets.FakeData(FAKE_VAL_SIZE, shape, classes, to_tensor,
                            random_offset=FAKE_TRAIN_SIZE)
    return train, val


def _transforms(size: int, train: bool):
    from torchvision import transforms

    normalize = [transforms.ToTensor(), transforms.Normalize(_MEAN, _STD)]
    if train:
        return transforms.Compose(
            [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *normalize])
    return transforms.Compose(
        [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), *normalize])


def _split(n: int) -> tuple[list[int], list[int]]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    n_val = max(1, int(n * VAL_FRACTION))
    return perm[n_val:], perm[:n_val]


def _from_path(path: Path, image_size: int | None) -> tuple[Dataset, Dataset, int]:
    from torchvision import datasets, transforms

    if not path.exists():
        raise DataError(f"data folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise DataError(f"data path {str(path)!r} is not a folder")
    cifar_root = path.parent if path.name == "cifar-10-batches-py" else path
    if (cifar_root / "cifar-10-batches-py").is_dir():
        resize = [transforms.Resize(image_size)] if image_size else []
        norm = [transforms.ToTensor(), transforms.Normalize(_MEAN, _STD)]
        aug = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        try:
            full_train = datasets.CIFAR10(str(cifar_root), train=True, download=False,
                                          transform=transforms.Compose(aug + resize + norm))
        except RuntimeError as exc:  # torchvision's checksum test failed
            raise DataError(f"CIFAR-10 folder {str(cifar_root)!r} is incomplete: {exc}") from None
        full_val = datasets.CIFAR10(str(cifar_root), train=True, download=False,
                                    transform=transforms.Compose(resize + norm))
        train_idx, val_idx = _split(len(full_train))
        return Subset(full_train, train_idx), Subset(full_val, val_idx), 10
    split = (path / "train").is_dir() and (path / "val").is_dir()
    try:
        train = datasets.ImageFolder(str(path / "train" if split else path))
        val = datasets.ImageFolder(str(path / "val" if split else path))
    except FileNotFoundError as exc:  # ImageFolder's "no class folders / no images"
        raise DataError(f"no images found under {str(path)!r}: {exc}") from None
    if split and train.class_to_idx != val.class_to_idx:
        raise DataError(f"{path}/train and {path}/val have different classes")
    size = image_size or inferred_size(train, path)
    train.transform, val.transform = _transforms(size, True), _transforms(size, False)
    if split:
        return train, val, len(train.classes)
    train_idx, val_idx = _split(len(train))
    return Subset(train, train_idx), Subset(val, val_idx), len(train.classes)


def inferred_size(folder: Dataset, path: Path) -> int:
    """The short side of the most common image size among up to SIZE_SAMPLES images
    spread over the folder (only their headers are read), logged with what it saw."""
    from PIL import Image

    samples = folder.samples  # type: ignore[attr-defined]
    step = max(1, len(samples) // SIZE_SAMPLES)
    sizes: dict[tuple[int, int], int] = {}
    for file, _ in samples[::step]:
        with Image.open(file) as image:
            sizes[image.size] = sizes.get(image.size, 0) + 1
    (width, height), seen = max(sizes.items(), key=lambda item: item[1])
    side = max(MIN_SIZE, min(width, height))
    log.warning("images in %s are %dx%d (%d of %d sampled): training at %d px "
                "(--image-size overrides)", path, width, height, seen, sum(sizes.values()), side)
    return side


def load(spec: str, data: str | None = None, image_size: int | None = None,
         num_classes: int | None = None) -> Workload:
    return torchvision_workload(spec.removeprefix("torchvision:"), data=data,
                                image_size=image_size, num_classes=num_classes)


KIND = WorkloadKind(
    name="torchvision", usage="torchvision:MODEL",
    entries=(("torchvision:M", "any torchvision classification model M (weights none) with "
                               "--data PATH|fake"),),
    matches=lambda spec: spec.startswith("torchvision:"), load=load,
    options=(KindOption("data", str, "Images for torchvision workloads: an ImageFolder path, "
                                     "a CIFAR-10 folder, or 'fake'."),
             KindOption("image_size", int, "Image side in pixels for torchvision workloads "
                                           "(fake: default 224; an ImageFolder: inferred "
                                           "from its images)."),
             KindOption("num_classes", int, "Classes for --data fake (default 10).")))
