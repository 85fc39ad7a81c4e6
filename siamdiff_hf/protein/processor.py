"""`ProteinStructureProcessor`: structures (files, bytes, `Protein`s, Bio.PDB objects, dicts) -> packed model inputs."""

from __future__ import annotations

import functools
import logging
import os
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from siamdiff_hf.protein import constants as C
from siamdiff_hf.protein.parsing import check_backend, parse_structure
from siamdiff_hf.protein.protein import InvalidStructureError, Protein

if TYPE_CHECKING:
    from transformers import EsmTokenizer

logger = logging.getLogger(__name__)
MODEL_INPUT_NAMES: tuple[str, ...] = ("residue_type", "atom_positions", "atom_mask", "batch", "chain_index")
ESM_INPUT_NAME: str = "esm_input_ids"


class ProteinStructureProcessor(FeatureExtractionMixin):
    """Turns protein structures into the packed tensors every encoder's ``forward`` takes.

    Proteins are parsed (gemmi or Biopython), optionally restricted to ``chain`` and cropped to ``crop_length``
    residues, then concatenated along the residue axis; ``batch`` says which protein each residue belongs to.
    Saved as ``preprocessor_config.json`` by ``save_pretrained`` and restored by ``from_pretrained``.

    Args:
        crop_length: keep at most this many contiguous residues per protein (None: no crop). The paper uses 150
            residues at residue level and 100 at atom level.
        random_crop: draw the window start uniformly (every start possible); False takes the first residues.
        backend: parser for files and bytes, ``"gemmi"`` (fast) or ``"biopython"``; both give identical arrays.
        chain: keep only this chain id (or list of ids) of every structure; None keeps all chains.
        include_esm_tokens: also emit ``esm_input_ids`` for ESM-GearNet (ESM-2 alphabet, `esm_tokenizer`).

    Output (`BatchFeature`, N = residues in the batch): ``residue_type`` (N,) long, ``atom_positions`` (N, 37, 3)
    float32, ``atom_mask`` (N, 37) bool, ``batch`` (N,) long protein index, ``chain_index`` (N,) long chain
    number, unique across the whole batch (two proteins never share one); with ``include_esm_tokens``, also
    ``esm_input_ids`` (N,) long: the ESM token of each residue row ('X' for unknown residues), without
    ``<cls>``/``<eos>``. One token per residue keeps ESM aligned with the structure through packing and
    cropping; the model adds ``<cls>``/``<eos>`` per chain or window (see `EsmGearNetConfig`).
    """

    model_input_names: ClassVar[list[str]] = list(MODEL_INPUT_NAMES)

    def __init__(
        self,
        crop_length: int | None = None,
        random_crop: bool = False,
        backend: str = "gemmi",
        chain: str | list[str] | None = None,
        include_esm_tokens: bool = False,
        **kwargs,
    ):
        if crop_length is not None and int(crop_length) < 1:
            raise ValueError(f"crop_length must be positive or None, got {crop_length}")
        check_backend(backend)
        kwargs.pop("feature_extractor_type", None)  # written by to_dict; the class itself says it
        super().__init__(**kwargs)
        self.crop_length = None if crop_length is None else int(crop_length)
        self.random_crop = bool(random_crop)
        self.backend = backend
        self.chain = chain
        self.include_esm_tokens = bool(include_esm_tokens)

    def __call__(
        self, items: Any, return_tensors: str | None = "pt", generator: Any = None, on_error: str = "raise"
    ) -> BatchFeature:
        """Return the packed model inputs of one item or a list of items.

        Args:
            items: a path (str/Path), file bytes, a `Protein`, a Bio.PDB Structure/Model, a dict of arrays
                (`Protein.to_dict` or a dataset example with at least ``residue_type``, ``atom_positions``,
                ``atom_mask``), or a list/tuple of those.
            return_tensors: ``"pt"`` for torch tensors, ``"np"`` or None for numpy arrays.
            generator: for random crops: numpy/torch Generator, int seed (one RNG for the whole batch), or None for
                torch's global RNG.
            on_error: ``"raise"`` (default): the first invalid item raises. ``"skip"``: invalid items are left
                out with a warning; the output's ``skipped`` attribute lists ``(item position, error)`` and
                ``kept`` the positions packed, so that protein ``b`` of the batch is item ``kept[b]``.

        Raises:
            InvalidStructureError: an item cannot be parsed or is invalid (with ``"skip"``: every item is); the
                message names the item.
        """
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not isinstance(items, (list, tuple)):
            items = [items]
        if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
            generator = np.random.default_rng(int(generator))  # one stream, so proteins get different starts
        proteins, kept, skipped = [], [], []
        for index, item in enumerate(items):
            try:
                proteins.append(self._crop(self.to_protein(item, index), generator))
            except InvalidStructureError as error:
                if on_error == "raise":
                    raise
                logger.warning("skipped %s", error)
                skipped.append((index, error))
                continue
            kept.append(index)
        if not proteins and skipped:
            raise InvalidStructureError("<batch>", f"all {len(skipped)} items are invalid; first: {skipped[0][1]}")
        arrays = pack(proteins)
        if self.include_esm_tokens:
            arrays[ESM_INPUT_NAME] = esm_token_ids(arrays["residue_type"])
        batch = BatchFeature(arrays, tensor_type="pt" if return_tensors == "pt" else None)
        batch.kept, batch.skipped = kept, skipped  # attributes, not keys: the keys stay the model's inputs
        return batch

    def collate(self, examples: list[Any]) -> BatchFeature:
        """Return the packed torch inputs of a list of examples: a ``collate_fn`` for a DataLoader."""
        return self(list(examples), return_tensors="pt")

    def to_protein(self, item: Any, index: int = 0) -> Protein:
        """Return the validated `Protein` of one item, restricted to ``self.chain`` (not cropped)."""
        if isinstance(item, (str, os.PathLike)):
            return parse_structure(item, chain=self.chain, backend=self.backend)
        if isinstance(item, (bytes, bytearray, memoryview)):
            return parse_structure(bytes(item), name=f"<item {index}: bytes>", chain=self.chain, backend=self.backend)
        if hasattr(item, "level") and hasattr(item, "get_list"):  # Bio.PDB Structure or Model
            return parse_structure(item, chain=self.chain)
        if isinstance(item, Protein):
            protein = item
        elif isinstance(item, dict):
            try:
                protein = Protein.from_dict(item)
            except (KeyError, ValueError, TypeError) as err:
                raise InvalidStructureError(
                    _item_name(item, index), f"bad example ({type(err).__name__}: {err})"
                ) from err
        else:
            raise TypeError(f"item {index}: cannot make a protein from {type(item).__name__}")
        name = _item_name(protein.to_dict(), index)
        if self.chain is not None:
            protein = protein.select_chains(self.chain, source=name)
        return protein.validate(name)

    def _crop(self, protein: Protein, generator: Any) -> Protein:
        if self.crop_length is None or protein.length <= self.crop_length:
            return protein
        return protein.crop(self.crop_length, random=self.random_crop, generator=generator)


def _item_name(item: dict[str, Any], index: int) -> str:
    """Return how errors name an in-memory item: its position and id."""
    item_id = item.get("id")
    return f"item {index} ({item_id})" if item_id else f"item {index}"


def pack(proteins: list[Protein]) -> dict[str, np.ndarray]:
    """Return the concatenated numpy arrays of proteins (the processor's output keys), chains numbered globally."""
    if not proteins:
        raise ValueError("cannot pack an empty list of proteins")
    chain_index, offset = [], 0
    for protein in proteins:
        chain_id = protein.chain_id
        if chain_id[0] == chain_id[-1] and (chain_id == chain_id[0]).all():  # one chain (AFDB models): no sorts
            chain_index.append(np.full(len(chain_id), offset, dtype=np.int64))
            offset += 1
            continue
        _, local = np.unique(chain_id, return_inverse=True)
        # renumber chains by first appearance so chain_index increases along the packed residues
        order = np.unique(local, return_index=True)[1].argsort().argsort()
        chain_index.append(order[local] + offset)
        offset += len(order)
    return {
        "residue_type": np.concatenate([p.residue_type for p in proteins]),
        "atom_positions": np.concatenate([p.atom_positions for p in proteins]),
        "atom_mask": np.concatenate([p.atom_mask for p in proteins]),
        "batch": np.repeat(np.arange(len(proteins), dtype=np.int64), [p.length for p in proteins]),
        "chain_index": np.concatenate(chain_index).astype(np.int64),
    }


@functools.lru_cache(maxsize=1)
def esm_tokenizer() -> EsmTokenizer:
    """Return the ESM-2 `EsmTokenizer` built from the vocabulary the package ships (33 tokens, fair-esm order)."""
    from transformers import EsmTokenizer

    vocab = resources.files("siamdiff_hf").joinpath("resources", "esm", "vocab.txt")
    with resources.as_file(vocab) as path:
        return EsmTokenizer(str(path))


@functools.lru_cache(maxsize=1)
def esm_residue_tokens() -> np.ndarray:
    """Return (21,) the ESM token id of each residue id (TorchDrug order; the unknown id 20 becomes 'X')."""
    letters = [*C.RESIDUE_LETTERS, "X"]
    return np.asarray(esm_tokenizer().convert_tokens_to_ids(letters), dtype=np.int64)


def esm_token_ids(residue_type: np.ndarray) -> np.ndarray:
    """Return (N,) ESM token ids of (N,) residue ids: one token per residue, no ``<cls>``/``<eos>``."""
    return esm_residue_tokens()[np.clip(np.asarray(residue_type, dtype=np.int64), 0, C.UNKNOWN_RESIDUE)]
