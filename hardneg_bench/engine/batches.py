"""Batches for the loops: two augmented views for pretraining, one augmented view for the paper
probe, plain images for feature extraction.

In-memory datasets (:class:`ImageTensorSet`) stay uint8 on the device and are augmented there in
whole batches (:class:`BatchAugment`); image folders go through a DataLoader whose workers decode
and augment each image with the torchvision reference pipeline. Every epoch's order and
augmentations are drawn from a generator seeded by the caller, so a resumed run sees the very same
batches as an uninterrupted one.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from ..config import AugmentConfig, ProbeConfig
from ..data.augment import BatchAugment, eval_transform, normalize_batch, reference_transform
from ..data.base import DatasetSpec, ImageSet, ImageTensorSet
from ..methods.base import Batch


def steps_per_epoch(size: int, batch_size: int, drop_last: bool) -> int:
    return size // batch_size if drop_last else -(-size // batch_size)


def _index_batches(size: int, batch_size: int, drop_last: bool, generator: torch.Generator | None, device: torch.device) -> list[torch.Tensor]:
    """The epoch's batches of indices, on ``device`` (one copy per epoch, none per step)."""
    order = torch.randperm(size, generator=generator) if generator is not None else torch.arange(size)
    usable = (size // batch_size) * batch_size if drop_last else size
    return list(order[:usable].to(device).split(batch_size))


class _TransformedImages(Dataset):
    """``views`` independently transformed copies of each image, its index and label."""

    def __init__(self, data: ImageSet, transform: Callable, views: int) -> None:
        self.data, self.transform, self.views = data, transform, views

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image = self.data.image(index)
        return (*(self.transform(image) for _ in range(self.views)), index, self.data.labels[index])


def _loader(data: ImageSet, transform: Callable, views: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int, num_workers: int, share: distributed.Share = distributed.WHOLE) -> DataLoader:
    """Batches in the epoch's order (``shuffle``: drawn from ``seed``), this process's rows of
    each; the generator also fixes each worker's seed (so its augmentations)."""
    order = _index_batches(len(data), batch_size, drop_last, torch.Generator().manual_seed(seed) if shuffle else None, torch.device("cpu"))
    return DataLoader(
        _TransformedImages(data, transform, views),
        batch_sampler=[distributed.rows(idx, share).tolist() for idx in order],
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def crop_size_of(augment: AugmentConfig, spec: DatasetSpec) -> int:
    return augment.crop_size or spec.image_size


class DeviceImages:
    """An :class:`ImageTensorSet` moved to ``device`` once and kept there."""

    def __init__(self, data: ImageTensorSet, device: torch.device) -> None:
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """NHWC layout: convolutions run faster in it on CPU (oneDNN) and on GPU tensor cores."""
    return images.contiguous(memory_format=torch.channels_last)


def _augmented(
    data: ImageSet | DeviceImages, augment: AugmentConfig, spec: DatasetSpec, batch_size: int, device: torch.device, seed: int, num_workers: int, views: int, drop_last: bool, share: distributed.Share
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of (``views`` augmented copies of this process's rows of the batch, the
    whole batch's indices and labels)."""
    size = crop_size_of(augment, spec)
    if isinstance(data, DeviceImages):
        batch_augment = BatchAugment(augment, spec.mean, spec.std, size)
        generator = torch.Generator(device=data.device).manual_seed(seed)
        for idx in _index_batches(len(data), batch_size, drop_last, torch.Generator().manual_seed(seed), data.device):
            images = data.images[distributed.rows(idx, share)]
            yield [channels_last(batch_augment(images, generator, share)) for _ in range(views)], idx, data.labels[idx]
        return
    transform = reference_transform(augment, spec.mean, spec.std, size)
    for *images, idx, labels in _loader(data, transform, views, batch_size, True, drop_last, seed, num_workers, share):
        idx, labels = idx.to(device), labels.to(device)
        if share != distributed.WHOLE:
            idx, labels = distributed.gather(idx), distributed.gather(labels)
        yield [channels_last(view.to(device, non_blocking=True)) for view in images], idx, labels


def pretraining_batches(
    data: ImageSet | DeviceImages, augment: AugmentConfig, spec: DatasetSpec, batch_size: int, device: torch.device, seed: int, num_workers: int, views: int
) -> Iterator[Batch]:
    """One epoch of pretraining batches of one or two views (last incomplete batch dropped); with
    several processes, each process's rows of the global batch."""
    share = distributed.this_share()
    for images, idx, labels in _augmented(data, augment, spec, batch_size, device, seed, num_workers, views, True, share):
        yield Batch(images[0], images[1] if views == 2 else None, idx, labels)


def augmented_batches(
    data: ImageSet | DeviceImages, augment: AugmentConfig, spec: DatasetSpec, batch_size: int, device: torch.device, seed: int, num_workers: int, drop_last: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (augmented images, labels), shuffled, every image once (but the last
    incomplete batch with ``drop_last``)."""
    for (images,), _, labels in _augmented(data, augment, spec, batch_size, device, seed, num_workers, 1, drop_last, distributed.WHOLE):
        yield images, labels


def test_geometry(probe: ProbeConfig, spec: DatasetSpec) -> tuple[int | None, int]:
    """(side the test images are resized to first or None, side they are centre-cropped to) as
    :func:`eval_batches` applies them: in-memory sets (32/96-px datasets) keep their native size
    unless ``image_size`` asks for another; folders (ImageNet-100) default to Resize(256) +
    CenterCrop(224), MoCo's and CMC's test transform."""
    size = probe.image_size or spec.image_size
    if spec.folder:
        return probe.test_resize or int(size / 0.875), size
    return probe.test_resize, size


def eval_batches(
    data: ImageSet | DeviceImages, spec: DatasetSpec, probe: ProbeConfig, batch_size: int, device: torch.device, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every image once, in order, un-augmented, resized and centre-cropped as
    :func:`test_geometry` says."""
    resize, size = test_geometry(probe, spec)
    if isinstance(data, DeviceImages):
        for idx in _index_batches(len(data), batch_size, False, None, data.device):
            yield channels_last(normalize_batch(data.images[idx], spec.mean, spec.std, size, resize)), data.labels[idx]
        return
    transform = eval_transform(spec.mean, spec.std, size, resize)
    for images, _, labels in _loader(data, transform, 1, batch_size, False, False, 0, num_workers):
        yield channels_last(images.to(device, non_blocking=True)), labels.to(device)


def on_device(data: ImageSet, device: torch.device) -> ImageSet | DeviceImages:
    """In-memory sets move to the device once; folders stay on disk."""
    return DeviceImages(data, device) if isinstance(data, ImageTensorSet) else data
