"""Data sets, transforms, the search's train/val split and the seeded samplers that make runs resumable.

``digits`` (embedded, offline), ``synthetic`` (random tensors, for benchmarks), ``cifar10``/``cifar100``
(torchvision, ``--download`` for users with internet) and ``folder`` (an ImageFolder tree).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from importlib import resources

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import DataError

CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``(classes, channels, image size)`` of the data sets with a fixed shape
DATA_SHAPES = {"digits": (10, 1, 8), "cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "synthetic": (10, 3, 32)}


@dataclass
class DataBundle:
    """A data set ready for a run: ``train`` (searched on, or trained on), ``test`` (or None), and its shape."""

    train: Dataset
    test: Dataset | None
    num_classes: int
    in_channels: int
    image_size: int


class TensorImages(Dataset):
    """Images held in memory as one tensor (N, C, H, W), with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


class Cutout:
    """Zero one random ``length`` x ``length`` square (clipped at the border) of a (C, H, W) tensor
    (DeVries & Taylor, 2017), drawing from torch's global RNG so runs are reproducible."""

    def __init__(self, length: int):
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        img = img.clone()
        img[..., max(0, cy - half) : min(h, cy + half), max(0, cx - half) : min(w, cx + half)] = 0
        return img


# ---------------------------------------------------------------------------------------------------------


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded UCI digits: images (1797, 1, 8, 8) float in [0, 1], labels (1797,) int64."""
    raw = gzip.decompress(resources.files("darts").joinpath("data_files/digits.u8.gz").read_bytes())
    table = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(1797, 65)
    return table[:, :64].float().div(16.0).view(-1, 1, 8, 8), table[:, 64].long()


def _digits(cutout: int) -> DataBundle:
    x, y = load_digits()
    x = (x - x.mean()) / x.std()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # fixed 1500 / 297 split
    tr, te = perm[:1500], perm[1500:]
    transform = Cutout(cutout) if cutout else None
    return DataBundle(TensorImages(x[tr], y[tr], transform), TensorImages(x[te], y[te]), 10, 1, 8)


def _synthetic(n_train: int = 1024, n_test: int = 256, size: int = 32, classes: int = 10) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, 3, size, size, generator=g)
    y = torch.randint(classes, (n_train + n_test,), generator=g)
    return DataBundle(TensorImages(x[:n_train], y[:n_train]), TensorImages(x[n_train:], y[n_train:]), classes, 3,
                      size)


def _cifar(name: str, root: str | None, download: bool, augment: bool, cutout: int) -> DataBundle:
    import torchvision
    import torchvision.transforms as T

    if root is None:
        raise DataError(f"--dataset {name} needs --data DIR (the folder that holds or will hold the data set)")
    if not download and not os.path.isdir(root):
        raise DataError(f"data directory {root!r} does not exist; point --data at the folder holding "
                        f"{'cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python'}, or add --download")
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    norm = [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    train_tf = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    train_tf = T.Compose(train_tf + norm + ([Cutout(cutout)] if cutout else []))
    try:
        train = cls(root, train=True, download=download, transform=train_tf)
        test = cls(root, train=False, download=download, transform=T.Compose(norm))
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"{name} not found or corrupted in {root!r} ({e}); add --download to fetch it") from None
    except OSError as e:  # no network when downloading
        raise DataError(f"could not download {name} into {root!r}: {e}") from None
    return DataBundle(train, test, 10 if name == "cifar10" else 100, 3, 32)


def _load_image(path: str):
    """An ImageFolder image as RGB; a file that is not a readable image is a :class:`DataError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:  # truncated, corrupt, not an image
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {str(e)[:120]}") from None


def _image_folder(root: str | None, size: int, imagenet: bool, augment: bool, cutout: int) -> DataBundle:
    import torchvision
    import torchvision.transforms as T

    if root is None:
        raise DataError("--dataset folder needs --data DIR (an ImageFolder tree: DIR/class/image, or DIR/train "
                        "and DIR/val)")
    if not os.path.isdir(root):
        raise DataError(f"data directory {root!r} does not exist")
    train_dir = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    val_dir = os.path.join(root, "val") if os.path.isdir(os.path.join(root, "val")) else None
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (CIFAR_MEAN, CIFAR_STD)
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    if imagenet:
        train_tf = [T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                    T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)]
        test_tf = [T.Resize(int(size * 256 / 224)), T.CenterCrop(size)]
    else:
        train_tf = [T.Resize((size, size))] + ([T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()]
                                               if augment else [])
        test_tf = [T.Resize((size, size))]
    train_tf = T.Compose((train_tf if augment or not imagenet else test_tf) + norm + ([Cutout(cutout)] if cutout
                                                                                     else []))
    try:
        train = torchvision.datasets.ImageFolder(train_dir, transform=train_tf, loader=_load_image)
        test = torchvision.datasets.ImageFolder(val_dir, transform=T.Compose(test_tf + norm),
                                                loader=_load_image) if val_dir else None
    except (FileNotFoundError, RuntimeError) as e:
        raise DataError(f"{root!r} is not a usable ImageFolder tree: {e}") from None
    if len(train.classes) < 2:
        raise DataError(f"{train_dir!r} has {len(train.classes)} class folder(s); classification needs at least 2")
    if test is not None and test.classes != train.classes:
        raise DataError(f"{val_dir!r} has different class folders from {train_dir!r}")
    return DataBundle(train, test, len(train.classes), 3, size)


# ---------------------------------------------------------------------------------------------------------
# A user's own data (the Python API): a Dataset of (image, label) pairs, or a pair of tensors


class CheckedImages(Dataset):
    """A user's data set, checked item by item as it is read: every image a float tensor of one shape, every label
    an integer in ``[0, num_classes)``. A bad item is a :class:`DataError` naming its index, not a failure deep
    inside the data loader."""

    def __init__(self, dataset, shape: tuple[int, ...], num_classes: int, name: str):
        self.dataset, self.shape, self.num_classes, self.name = dataset, shape, num_classes, name

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return _check_item(self.dataset[i], i, self.name, self.shape, self.num_classes)


def _label(y, i: int, name: str) -> int:
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point() and y.dtype != torch.bool:
        return int(y)
    if isinstance(y, int) and not isinstance(y, bool):
        return y
    raise DataError(f"{name}[{i}]: the label must be an integer class index, got {type(y).__name__} {y!r:.40}")


def _check_item(item, i: int, name: str, shape=None, num_classes=None):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DataError(f"{name}[{i}] must be an (image, label) pair, got {type(item).__name__}")
    x, y = item
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        what = f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, torch.Tensor) else             type(x).__name__
        raise DataError(f"{name}[{i}]: the image must be a float tensor (C, H, W), got {what} (convert images "
                        "with torchvision.transforms.ToTensor())")
    if shape is not None and tuple(x.shape) != shape:
        raise DataError(f"{name}[{i}]: image of shape {tuple(x.shape)}, but the first is {shape}; every image must "
                        "have one size (resize them)")
    y = _label(y, i, name)
    if num_classes is not None and not 0 <= y < num_classes:
        raise DataError(f"{name}[{i}]: label {y} is out of range for {num_classes} classes (labels are 0..."
                        f"{num_classes - 1})")
    return x, y


def _as_dataset(data, name: str):
    """A Dataset from a Dataset or an ``(images, labels)`` pair of tensors."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
            raise DataError(f"{name} as tensors must be images (N, C, H, W) and labels (N,), got {tuple(x.shape)} "
                            f"and {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"{name}: labels must be integer class indices, got dtype {y.dtype}")
        return TensorImages(x.float(), y.long())
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise DataError(f"{name} must be a torch Dataset of (image, label) pairs or a pair of tensors "
                        f"(images, labels), got {type(data).__name__}")
    return data


def _labels(dataset, name: str) -> list[int]:
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return [_label(t if isinstance(t, torch.Tensor) else int(t), i, name) for i, t in enumerate(targets)]
    if isinstance(dataset, TensorImages):
        return dataset.labels.tolist()
    return [_label(dataset[i][1], i, name) for i in range(len(dataset))]


def user_data(train, test=None, num_classes: int | None = None) -> DataBundle:
    """A :class:`DataBundle` from a user's data: ``train`` (and optionally ``test``) a Dataset of ``(image, label)``
    pairs, images float tensors ``(C, H, W)`` of one size, labels integers; or a pair of tensors
    ``(images (N, C, H, W), labels (N,))``. Channels and image size come from the first image, the number of
    classes from ``num_classes`` or the largest label. Raises :class:`DataError` for an empty set, items that are
    not such pairs, mixed image sizes, labels out of range, or fewer than 2 classes."""
    train = _as_dataset(train, "train_data")
    if len(train) == 0:
        raise DataError("train_data is empty")
    x0, _ = _check_item(train[0], 0, "train_data")
    shape = tuple(x0.shape)
    labels = _labels(train, "train_data")
    if num_classes is None:
        if min(labels) < 0:
            raise DataError(f"train_data: label {min(labels)} is negative; labels are class indices 0, 1, ...")
        num_classes = max(labels) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DataError(f"num_classes must be a positive integer, got {num_classes!r}")
    bad = next((i for i, y in enumerate(labels) if not 0 <= y < num_classes), None)
    if bad is not None:
        raise DataError(f"train_data[{bad}]: label {labels[bad]} is out of range for {num_classes} classes")
    if len(set(labels)) < 2 or num_classes < 2:
        raise DataError(f"train_data has {len(set(labels))} class(es); classification needs at least 2")
    if min(shape[1:]) < 4:
        raise DataError(f"train_data: images of {shape[1]}x{shape[2]} are too small; the networks halve them twice")
    checked_test = None
    if test is not None:
        test = _as_dataset(test, "test_data")
        if len(test) == 0:
            raise DataError("test_data is empty")
        _check_item(test[0], 0, "test_data", shape, num_classes)
        checked_test = CheckedImages(test, shape, num_classes, "test_data")
    return DataBundle(CheckedImages(train, shape, num_classes, "train_data"), checked_test, num_classes, shape[0],
                      min(shape[1:]))


def load_data(name: str, root: str | None = None, download: bool = False, image_size: int = 32,
              imagenet_layout: bool = False, augment: bool = True, cutout: int = 0) -> DataBundle:
    """Load a data set by name. ``augment``: random crops/flips on the training set (off for search on digits);
    ``cutout``: cutout side length for the training set (0: off). Raises :class:`DataError` naming the problem."""
    if name == "digits":
        return _digits(cutout)
    if name == "synthetic":
        return _synthetic()
    if name in ("cifar10", "cifar100"):
        return _cifar(name, root, download, augment, cutout)
    if name == "folder":
        return _image_folder(root, image_size, imagenet_layout, augment, cutout)
    raise DataError(f"unknown data set {name!r}")


# ---------------------------------------------------------------------------------------------------------
# Seeded sampling: each pass over a split is a permutation drawn from (seed, pass), so a resumed run sees the
# same batches as an uninterrupted one.


class PassSampler(Sampler[int]):
    """Yields ``indices`` in the order of permutation number ``pass_index`` of ``seed``, from ``start`` on.

    With ``world_size`` > 1 each rank takes every ``world_size``-th element of the permutation (the
    DistributedSampler split, trimmed so that every rank gets the same number of samples)."""

    def __init__(self, indices, seed: int, rank: int = 0, world_size: int = 1):
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.seed, self.pass_index, self.start = seed, 0, 0
        self.rank, self.world_size = rank, world_size

    def set_pass(self, pass_index: int, start: int = 0) -> None:
        self.pass_index, self.start = pass_index, start

    def _shard(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.pass_index)
        order = self.indices[torch.randperm(len(self.indices), generator=g)]
        per_rank = len(order) // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self):
        return iter(self._shard()[self.start :].tolist())

    def __len__(self):
        return len(self.indices) // self.world_size - self.start


def make_loader(dataset, indices, batch_size: int, seed: int, num_workers: int, shuffle: bool = True,
                drop_last: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A loader over ``dataset[indices]``; shuffled loaders use a :class:`PassSampler` (sharded over
    ``world_size`` ranks; ``batch_size`` is per rank)."""
    indices = list(indices)
    available = len(indices) // world_size if shuffle else len(indices)
    if batch_size > available:
        where = f" per rank ({world_size} ranks)" if world_size > 1 and shuffle else ""
        raise DataError(f"batch size {batch_size} is larger than the split it draws from ({available} samples"
                        f"{where})")
    sampler = PassSampler(indices, seed, rank, world_size) if shuffle else indices
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


class BatchStream:
    """An endless stream of batches over a loader with a :class:`PassSampler`, resumable from its state.

    The search draws one validation batch per step from this persistent stream (not a new iterator per step,
    which would re-shuffle and re-start workers every step)."""

    def __init__(self, loader: DataLoader):
        self.loader, self.pass_index, self.position = loader, 0, 0
        self._it = None

    def __next__(self):
        while True:
            if self._it is None:
                self.loader.sampler.set_pass(self.pass_index, self.position * self.loader.batch_size)
                self._it = iter(self.loader)
            try:
                batch = next(self._it)
                self.position += 1
                return batch
            except StopIteration:
                self._it, self.pass_index, self.position = None, self.pass_index + 1, 0

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"pass_index": self.pass_index, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.pass_index, self.position, self._it = int(state["pass_index"]), int(state["position"]), None


def search_split(n: int, train_portion: float) -> tuple[range, range]:
    """The DARTS split of the training set: the first ``train_portion`` for weights, the rest for α."""
    split = int(n * train_portion)
    if split == 0 or split == n:
        raise DataError(f"--train-portion {train_portion} leaves one split of {n} samples empty")
    return range(split), range(split, n)
