"""`ProteinStructureProcessor`: item kinds, packing, cropping, serialisation, errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from Bio.PDB import PDBParser

from siamdiff_hf.protein import InvalidStructureError, Protein, parse_structure
from siamdiff_hf.protein.processor import (
    ESM_INPUT_NAME,
    MODEL_INPUT_NAMES,
    ProteinStructureProcessor,
    esm_token_ids,
    esm_tokenizer,
)

DTYPES = {
    "residue_type": torch.long,
    "atom_positions": torch.float32,
    "atom_mask": torch.bool,
    "batch": torch.long,
    "chain_index": torch.long,
}


def two_chain_protein(a: Protein, b: Protein) -> Protein:
    """Return a and b as chains 'A' and 'B' of one protein."""
    merged = {k: np.concatenate([a.to_dict()[k], b.to_dict()[k]]) for k in a.to_dict() if k != "id"}
    merged["chain_id"] = np.array(["A"] * a.length + ["B"] * b.length)
    return Protein.from_dict({**merged, "id": "dimer"})


@pytest.fixture(scope="module")
def proteins(structure_paths) -> list[Protein]:
    return [parse_structure(p) for p in structure_paths[:3]]


def test_keys_shapes_dtypes(structure_paths):
    out = ProteinStructureProcessor()(structure_paths[0])
    assert set(out.keys()) == set(MODEL_INPUT_NAMES)
    n = out["residue_type"].shape[0]
    assert out["atom_positions"].shape == (n, 37, 3) and out["atom_mask"].shape == (n, 37)
    for key, dtype in DTYPES.items():
        assert isinstance(out[key], torch.Tensor) and out[key].dtype == dtype, key
        assert out[key].shape[0] == n
    assert out["batch"].eq(0).all() and out["chain_index"].eq(0).all()
    np_out = ProteinStructureProcessor()(structure_paths[0], return_tensors="np")
    assert all(isinstance(v, np.ndarray) for v in np_out.values())
    assert np_out["atom_mask"].dtype == bool and np_out["batch"].dtype == np.int64
    np.testing.assert_array_equal(np_out["atom_positions"], out["atom_positions"].numpy())


def test_batching_and_global_chain_index(proteins):
    a, b, c = proteins
    dimer = two_chain_protein(a, b)
    out = ProteinStructureProcessor()([c, dimer, a], return_tensors="np")
    lengths = [c.length, a.length + b.length, a.length]
    np.testing.assert_array_equal(out["batch"], np.repeat([0, 1, 2], lengths))
    np.testing.assert_array_equal(out["chain_index"], np.repeat([0, 1, 2, 3], [c.length, a.length, b.length, a.length]))
    expected = np.concatenate([c.residue_type, dimer.residue_type, a.residue_type])
    np.testing.assert_array_equal(out["residue_type"], expected)
    np.testing.assert_array_equal(out["atom_positions"][: c.length], c.atom_positions)
    # chains numbered by first appearance, whatever their ids
    swapped = Protein.from_dict({**dimer.to_dict(), "chain_id": np.where(dimer.chain_id == "A", "Z", "B")})
    out = ProteinStructureProcessor()([swapped], return_tensors="np")
    np.testing.assert_array_equal(out["chain_index"], np.repeat([0, 1], [a.length, b.length]))


def test_every_item_kind_gives_the_same_output(data_dir, tmp_path):
    path = data_dir / "1mr1D.pdb.gz"
    protein = parse_structure(path)
    with gzip.open(path, "rt") as handle:
        structure = PDBParser(QUIET=True).get_structure("1mr1D", handle)
    d = protein.to_dict()
    example = {  # what a datasets row looks like: lists, pLDDT, no chains or numbering
        "id": "AF-X-F1-model_v4",
        "residue_type": d["residue_type"].tolist(),
        "atom_positions": d["atom_positions"].tolist(),
        "atom_mask": d["atom_mask"].tolist(),
        "plddt": d["b_factor"].tolist(),
    }
    items = [str(path), path, path.read_bytes(), gzip.decompress(path.read_bytes()), protein, structure,
             structure[0], d, example]  # fmt: skip
    processor = ProteinStructureProcessor(backend="biopython")
    reference = processor(protein, return_tensors="np")
    for item in items:
        out = processor(item, return_tensors="np")
        for key in MODEL_INPUT_NAMES:
            np.testing.assert_array_equal(out[key], reference[key], err_msg=f"{type(item).__name__} {key}")
    batch = processor(items)
    assert batch["batch"].max() == len(items) - 1 and batch["chain_index"].max() == len(items) - 1


def test_crop_in_processor(proteins):
    processor = ProteinStructureProcessor(crop_length=30, random_crop=True)
    out = processor(proteins, generator=0, return_tensors="np")
    assert np.bincount(out["batch"]).tolist() == [30, 30, 30]
    again = processor(proteins, generator=np.random.default_rng(0), return_tensors="np")
    np.testing.assert_array_equal(out["atom_positions"], again["atom_positions"])
    first = ProteinStructureProcessor(crop_length=30)(proteins, return_tensors="np")
    np.testing.assert_array_equal(first["residue_type"][:30], proteins[0].residue_type[:30])
    short = ProteinStructureProcessor(crop_length=1000)(proteins, return_tensors="np")
    assert len(short["batch"]) == sum(p.length for p in proteins)
    # random windows of one protein vary with the draws and stay contiguous
    starts = set()
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        window = processor(proteins[0], generator=rng, return_tensors="np")["atom_positions"][:, 1]
        start = int(np.flatnonzero((proteins[0].atom_positions[:, 1] == window[0]).all(-1))[0])
        np.testing.assert_array_equal(window, proteins[0].atom_positions[start : start + 30, 1])
        starts.add(start)
    assert len(starts) > 5


def test_chain_setting(data_dir, proteins):
    dimer = two_chain_protein(proteins[0], proteins[1])
    out = ProteinStructureProcessor(chain="B")(dimer, return_tensors="np")
    np.testing.assert_array_equal(out["residue_type"], proteins[1].residue_type)
    assert ProteinStructureProcessor(chain="D")(data_dir / "1mr1D.pdb.gz")["batch"].shape[0] == 96
    with pytest.raises(InvalidStructureError, match="available chains"):
        ProteinStructureProcessor(chain="Q")(data_dir / "1mr1D.pdb.gz")


def test_save_and_load_round_trip(tmp_path):
    processor = ProteinStructureProcessor(crop_length=150, random_crop=True, backend="biopython", chain=["A", "B"])
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["crop_length"] == 150 and saved["chain"] == ["A", "B"]
    loaded = ProteinStructureProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ProteinStructureProcessor)
    for key in ("crop_length", "random_crop", "backend", "chain"):
        assert getattr(loaded, key) == getattr(processor, key), key
    assert loaded.to_dict() == processor.to_dict()
    default = ProteinStructureProcessor()
    default.save_pretrained(tmp_path / "default")
    assert ProteinStructureProcessor.from_pretrained(tmp_path / "default").to_dict() == default.to_dict()


def test_esm_tokens_follow_the_packed_residues(tmp_path, proteins):
    processor = ProteinStructureProcessor(crop_length=40, include_esm_tokens=True)
    out = processor(proteins)
    assert set(out.keys()) == {*MODEL_INPUT_NAMES, ESM_INPUT_NAME}
    assert out[ESM_INPUT_NAME].dtype == torch.long and out[ESM_INPUT_NAME].shape == out["residue_type"].shape
    sequence = "".join(p.sequence[:40] for p in proteins)
    assert out[ESM_INPUT_NAME].tolist() == esm_tokenizer().convert_tokens_to_ids(list(sequence))
    unknown = esm_token_ids(np.array([20, 0, 14]))  # unknown -> 'X', GLY -> 'G', MET -> 'M'
    assert unknown.tolist() == esm_tokenizer().convert_tokens_to_ids(["X", "G", "M"])
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["include_esm_tokens"] is True
    loaded = ProteinStructureProcessor.from_pretrained(tmp_path)
    assert loaded.include_esm_tokens and torch.equal(loaded(proteins)[ESM_INPUT_NAME], out[ESM_INPUT_NAME])
    collated = processor.collate([p.to_dict() for p in proteins])
    assert torch.equal(collated[ESM_INPUT_NAME], out[ESM_INPUT_NAME])


def test_collate_with_dataloader(proteins):
    processor = ProteinStructureProcessor(crop_length=40)
    examples = [p.to_dict() for p in proteins]
    loader = torch.utils.data.DataLoader(examples, batch_size=2, collate_fn=processor.collate)
    batches = list(loader)
    assert [int(b["batch"].max()) + 1 for b in batches] == [2, 1]
    assert set(batches[0].keys()) == set(MODEL_INPUT_NAMES) and batches[0]["residue_type"].shape == (80,)


def test_invalid_items_raise_naming_the_item(tmp_path, proteins):
    processor = ProteinStructureProcessor()
    bad = proteins[0].to_dict()
    bad["atom_positions"] = bad["atom_positions"].copy()
    bad["atom_positions"][5, 1, 0] = np.nan
    with pytest.raises(InvalidStructureError, match=r"item 1 \(1dx5I\).*NaN"):
        processor([proteins[1], bad])
    with pytest.raises(InvalidStructureError, match=r"item 0: bytes.*empty"):
        processor([b"   "])
    with pytest.raises(InvalidStructureError, match=r"missing\.pdb"):
        processor([proteins[0], str(tmp_path / "missing.pdb")])
    with pytest.raises(InvalidStructureError, match=r"item 0.*bad example"):
        processor({"residue_type": [1, 2], "atom_mask": np.ones((2, 37), bool)})
    with pytest.raises(TypeError):
        processor(3.5)
    with pytest.raises(ValueError):
        processor(proteins[0], return_tensors="tf")
    with pytest.raises(ValueError):
        ProteinStructureProcessor(backend="nope")


def test_on_error_skip_reports_the_skipped_items(tmp_path, structure_paths, caplog):
    bad = tmp_path / "broken.pdb"
    bad.write_text("HEADER    no atoms\nEND\n")
    items = [structure_paths[0], bad, b"not a structure", structure_paths[1]]
    processor = ProteinStructureProcessor()
    with pytest.raises(InvalidStructureError, match=r"broken\.pdb"):
        processor(items)  # strict by default
    out = processor(items, on_error="skip")
    assert out.kept == [0, 3] and [index for index, _ in out.skipped] == [1, 2]
    assert "broken.pdb" in str(out.skipped[0][1]) and "<item 2: bytes>" in str(out.skipped[1][1])
    assert "broken.pdb" in caplog.text
    expected = processor([structure_paths[0], structure_paths[1]])
    for key in MODEL_INPUT_NAMES:
        torch.testing.assert_close(out[key], expected[key], rtol=0, atol=0)
    assert set(out.keys()) == set(MODEL_INPUT_NAMES)
    with pytest.raises(InvalidStructureError, match="all 2 items are invalid"):
        processor([bad, bad], on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        processor(items, on_error="ignore")
