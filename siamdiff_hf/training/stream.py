"""The pre-training structure stream: `load_afdb` split over the ranks, cropped and packed into batches, endless
over epochs, and resumable at the exact batch.

Each process reads its own part of the stream (`split_dataset_by_node`), so ranks see disjoint structures; the
DataLoader is *not* passed to `accelerator.prepare` (that would shard the stream a second time) and batches are
moved to the device by hand. Crops come from a generator seeded by (seed, epoch, protein ids), so a resumed run
crops exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from ..data.afdb import StreamCounts, load_afdb
from ..protein.processor import ProteinStructureProcessor
from .config import PretrainConfig, resolve_source

logger = logging.getLogger(__name__)


def make_processor(config: PretrainConfig, training: bool = True) -> ProteinStructureProcessor:
    """Return the processor: random crops for training; no crop in the exported one (it is for inference)."""
    data = config.data
    if training:
        return ProteinStructureProcessor(crop_length=config.crop_length, random_crop=data.random_crop,
                                         backend=data.backend, **data.processor)  # fmt: skip
    return ProteinStructureProcessor(crop_length=None, random_crop=False, backend=data.backend, **data.processor)


def make_stream(config: PretrainConfig, accelerator: Accelerator) -> StructureStream:
    """Return this rank's endless batch stream: `load_afdb`, shard-order shuffle, this rank's part, batches."""
    from datasets.distributed import split_dataset_by_node

    data = config.data
    counts = StreamCounts()  # this rank's stream counts (in the main process; workers keep their own)
    dataset = load_afdb([resolve_source(s) for s in data.sources], min_length=data.min_length,
                        max_length=data.max_length, min_plddt=data.min_plddt, backend=data.backend,
                        prefer=data.prefer, files_per_shard=data.files_per_shard, report_skips=True,
                        counts=counts)  # fmt: skip
    if data.shuffle:  # the same seed on every rank, so that the ranks split one order
        dataset = dataset.shuffle(seed=config.seed, buffer_size=data.shuffle_buffer_size)
    if accelerator.num_processes > 1:
        if dataset.num_shards % accelerator.num_processes:
            logger.warning("%d shards cannot be split evenly over %d processes: every process reads every shard and "
                           "keeps 1 example in %d (more shards: lower data.files_per_shard)", dataset.num_shards,
                           accelerator.num_processes, accelerator.num_processes)  # fmt: skip
        dataset = split_dataset_by_node(dataset, rank=accelerator.process_index, world_size=accelerator.num_processes)
    collator = Collator(make_processor(config), seed=config.seed)
    stream = StructureStream(
        dataset, collator, data.batch_size, data.num_workers, data.drop_last, prefetch_factor=data.prefetch_factor
    )
    stream.counts = counts
    return stream


class Collator:
    """DataLoader ``collate_fn``: packs examples with the processor; returns (inputs, ids) and counts skips.

    The crop generator is seeded by (seed, epoch, the batch's protein ids): the same batch always gets the same
    crops, in any worker and after any resume, and crops change from epoch to epoch.
    """

    def __init__(self, processor: ProteinStructureProcessor, seed: int):
        self.processor, self.seed, self.epoch = processor, seed, 0

    def __call__(self, examples: list[dict[str, Any]]) -> tuple[Any, list[str], int]:
        ids = [str(example["id"]) for example in examples]
        rng = np.random.default_rng([self.seed, self.epoch, *(zlib.crc32(i.encode()) for i in ids)])
        skipped = sum(int(example.get("num_skipped") or 0) for example in examples)
        return self.processor(examples, return_tensors="pt", generator=rng), ids, skipped


class StructureStream:
    """Endless batches of one rank's part of the stream; epochs repeat with ``set_epoch``; position resumable.

    ``state_dict`` holds the epoch, the datasets position (exact without DataLoader workers; with workers it is
    exact only through torchdata's ``StatefulDataLoader``, used when installed) and the running totals.
    """

    def __init__(
        self, dataset: Any, collator: Collator, batch_size: int, num_workers: int, drop_last: bool,
        prefetch_factor: int | None = None,
    ):  # fmt: skip
        self.dataset, self.collator = dataset, collator
        self.loader_kwargs = dict(batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                                  collate_fn=collator)  # fmt: skip
        if num_workers > 0 and prefetch_factor is not None:  # workers decompress and parse while the step runs
            self.loader_kwargs["prefetch_factor"] = prefetch_factor
        self.epoch, self.proteins, self.skipped = 0, 0, 0
        self.counts: Any = None  # the `StreamCounts` of the stream, set by `make_stream`
        self._iterator: Iterator | None = None
        self._loader: Any = None
        self._loader_state: dict | None = None
        self._stateful = False
        if num_workers > 0:
            try:
                from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: F401

                self._stateful = True
            except ImportError:
                logger.warning("data.num_workers > 0 without torchdata: a resumed run restarts its current epoch "
                               "(pip install torchdata for exact resume, or use num_workers: 0)")  # fmt: skip

    def _new_loader(self) -> Any:
        self.dataset.set_epoch(self.epoch)
        self.collator.epoch = self.epoch
        if self._stateful:
            from torchdata.stateful_dataloader import StatefulDataLoader

            loader = StatefulDataLoader(self.dataset, **self.loader_kwargs)
            if self._loader_state is not None:
                loader.load_state_dict(self._loader_state)
                self._loader_state = None
            return loader
        return torch.utils.data.DataLoader(self.dataset, **self.loader_kwargs)

    def __iter__(self) -> StructureStream:
        return self

    def __next__(self) -> tuple[Any, list[str]]:
        for _ in range(2):  # the current epoch, else one fresh epoch
            if self._iterator is None:
                self._loader = self._new_loader()
                self._iterator = iter(self._loader)
            try:
                inputs, ids, skipped = next(self._iterator)
            except StopIteration:
                self.epoch += 1
                self._iterator = None
                continue
            self.proteins += len(ids)
            self.skipped += skipped
            return inputs, ids
        raise RuntimeError(
            "the data stream produced no batch in a whole epoch: every structure was filtered "
            "out or skipped (see the warnings), or fewer than batch_size remain with drop_last"
        )

    def totals(self) -> list[float]:
        """Return [proteins delivered, structures skipped as unreadable] on this rank since the stage began."""
        return [float(self.proteins), float(self.skipped)]

    def state_dict(self) -> dict[str, Any]:
        if self._stateful and self._loader is not None:
            position = self._loader.state_dict()
        else:
            position = self.dataset.state_dict()
        return {"epoch": self.epoch, "position": position, "proteins": self.proteins, "skipped": self.skipped,
                "stateful_loader": self._stateful}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.proteins, self.skipped = state["epoch"], state["proteins"], state["skipped"]
        self._iterator = None
        if state.get("stateful_loader") and self._stateful:
            self._loader_state = state["position"]
        elif not state.get("stateful_loader"):
            self.dataset.set_epoch(self.epoch)
            self.dataset.load_state_dict(state["position"])
