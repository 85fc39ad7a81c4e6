"""fair-esm ESM-2 -> transformers EsmModel, ESM-GearNet FusionNetwork -> EsmGearNetModel, `convert-fair-esm`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from transformers import EsmModel

from siamdiff_hf import ProteinStructureProcessor
from siamdiff_hf.commands import convert_fair_esm as command
from siamdiff_hf.convert.fair_esm import (
    convert_esm_gearnet_state_dict,
    convert_fair_esm,
    infer_esm_config,
    map_fair_esm_keys,
)
from siamdiff_hf.errors import CheckpointError
from siamdiff_hf.models.esm_gearnet import EsmGearNetModel, esm2_config
from siamdiff_hf.models.gearnet import GearNetConfig, GearNetModel
from siamdiff_hf.protein.processor import esm_tokenizer

try:  # fair-esm (the `test` extra): only the parity tests need it
    from esm import data as esm_data
    from esm.model import esm2
except ImportError:
    esm2 = esm_data = None
needs_fair_esm = pytest.mark.skipif(esm2 is None, reason="fair-esm (pip install fair-esm==2.0.0) is not installed")

DATA = Path(__file__).parents[1] / "data"
SEQUENCES = [("a", "MKTVRQERLKSIVRILERSKEPVSGAQLAEELSVSRQVIVQDIAYLRSLGYNIVATPRGYVLA"), ("b", "MKTAYIAK<mask>QISFVK"),
             ("c", "GSHMXDE")]  # fmt: skip


class Untrusted:
    """A class no loader should ever instantiate from a checkpoint."""


def random_fair_esm(seed: int = 0, layers: int = 2, width: int = 32, heads: int = 4) -> torch.nn.Module:
    """Return a small fair-esm ESM2 with random weights everywhere (LayerNorms and biases too)."""
    torch.manual_seed(seed)
    alphabet = esm_data.Alphabet.from_architecture("ESM-1b")
    model = esm2.ESM2(num_layers=layers, embed_dim=width, attention_heads=heads, alphabet=alphabet)
    with torch.no_grad():
        for name, value in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                value.add_(0.1 * torch.randn_like(value))
    return model.eval()


def fair_esm_checkpoint(model: torch.nn.Module, heads: int) -> dict:
    """Return a checkpoint laid out like the released .pt files: prefixed keys plus an argparse cfg."""
    state = {f"encoder.sentence_encoder.{k}": v for k, v in model.state_dict().items() if not k.startswith("lm_head")}
    state.update({f"encoder.{k}": v for k, v in model.state_dict().items() if k.startswith("lm_head")})
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers, encoder_embed_dim=model.embed_dim, encoder_attention_heads=heads,
        token_dropout=True,
    )  # fmt: skip
    return {"model": state, "cfg": {"model": cfg}}


def fair_esm_state_of(model: EsmModel) -> dict[str, torch.Tensor]:
    """Return a transformers EsmModel's weights under fair-esm ESM2 names (the converter's inverse)."""
    renames = [
        ("embeddings.word_embeddings.", "embed_tokens."), ("encoder.emb_layer_norm_after.", "emb_layer_norm_after."),
        ("attention.self.query.", "self_attn.q_proj."), ("attention.self.key.", "self_attn.k_proj."),
        ("attention.self.value.", "self_attn.v_proj."), ("attention.output.dense.", "self_attn.out_proj."),
        ("attention.LayerNorm.", "self_attn_layer_norm."), ("intermediate.dense.", "fc1."), ("output.dense.", "fc2."),
        ("LayerNorm.", "final_layer_norm."), ("encoder.layer.", "layers."),
    ]  # fmt: skip
    state = {}
    for key, value in model.state_dict().items():
        if key == "rotary_embeddings.inv_freq":
            for i in range(model.config.num_hidden_layers):
                state[f"layers.{i}.self_attn.rot_emb.inv_freq"] = value
            continue
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    return state


def random_hf_esm(seed: int = 0) -> EsmModel:
    torch.manual_seed(seed)
    model = EsmModel(esm2_config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
                     add_pooling_layer=False)  # fmt: skip
    with torch.no_grad():
        for value in model.parameters():
            value.add_(0.1 * torch.randn_like(value))
    return model.eval()


def fair_esm_representations(model: torch.nn.Module, sequences=SEQUENCES) -> tuple[torch.Tensor, torch.Tensor]:
    """Return fair-esm's padded token batch and last-layer representations (after the final LayerNorm)."""
    _, _, tokens = model.alphabet.get_batch_converter()(sequences)
    with torch.no_grad():
        out = model(tokens, repr_layers=[model.num_layers])
    return tokens, out["representations"][model.num_layers]


@needs_fair_esm
def test_tokenizer_matches_the_fair_esm_alphabet():
    alphabet = esm_data.Alphabet.from_architecture("ESM-1b")
    assert esm_tokenizer().all_tokens == list(alphabet.all_toks)
    _, _, tokens = alphabet.get_batch_converter()(SEQUENCES)
    ours = esm_tokenizer()([s for _, s in SEQUENCES], padding=True, return_tensors="pt")["input_ids"]
    assert torch.equal(ours, tokens)


@needs_fair_esm
def test_converted_model_gives_fair_esm_representations_on_padded_batches(tmp_path):
    reference = random_fair_esm()
    tokens, expected = fair_esm_representations(reference)
    path = tmp_path / "esm2_t2_tiny.pt"
    torch.save(fair_esm_checkpoint(reference, heads=4), path)
    for source in (path, reference.state_dict()):  # a released-style file, or a bare ESM2 state dict
        model = convert_fair_esm(source)
        assert model.config.num_attention_heads == 4 and model.config.intermediate_size == 128
        with torch.no_grad():
            ours = model(input_ids=tokens, attention_mask=(tokens != 1).long()).last_hidden_state
        real = tokens != 1
        assert (ours[real] - expected[real]).abs().max() < 1e-4
    assert torch.equal(model.rotary_embeddings.inv_freq, reference.layers[0].self_attn.rot_emb.inv_freq)


def test_round_trip_through_fair_esm_names_keeps_every_weight(tmp_path):
    """Runs without fair-esm: transformers -> fair-esm names (released file layout) -> converter -> same model."""
    reference = random_hf_esm()
    state = {f"encoder.sentence_encoder.{k}": v for k, v in fair_esm_state_of(reference).items()}
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4, token_dropout=True)
    torch.save({"model": state, "cfg": {"model": cfg}}, tmp_path / "esm2_tiny.pt")
    model = convert_fair_esm(tmp_path / "esm2_tiny.pt")
    assert model.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # FusionNetwork layout: sequence_model.model.* (fair-esm) + sequence_model.mapping + structure_model.* (GearNet)
    structure = GearNetModel(GearNetConfig(input_dim=32, hidden_dims=[16, 8], edge_input_dim=0, num_angle_bin=0))
    fusion = {f"sequence_model.model.{k}": v for k, v in fair_esm_state_of(reference).items()}
    fusion["sequence_model.mapping"] = torch.arange(21)
    fusion.update({f"structure_model.{k}": v for k, v in structure.state_dict().items()})
    converted = convert_esm_gearnet_state_dict(fusion)
    assert converted.output_dim == 32 + 24 and converted.config.gearnet_config.hidden_dims == [16, 8]
    for key, value in {**{f"esm.{k}": v for k, v in reference.state_dict().items()},
                       **{f"gearnet.{k}": v for k, v in structure.state_dict().items()}}.items():  # fmt: skip
        assert torch.equal(converted.state_dict()[key], value), key


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    state = fair_esm_state_of(random_hf_esm())
    torch.save({"model": state, "cfg": {"model": argparse.Namespace(), "extra": Untrusted()}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        convert_fair_esm(tmp_path / "bad.pt")


@needs_fair_esm
def test_heads_are_inferred_without_cfg():
    reference = random_fair_esm(layers=1, width=48, heads=6)
    state = reference.state_dict()
    assert infer_esm_config(state).num_attention_heads == 6
    del state["layers.0.self_attn.rot_emb.inv_freq"]
    assert infer_esm_config(state).num_attention_heads == 6  # from the contact head (layers x heads inputs)
    assert "lm_head.weight" not in str(map_fair_esm_keys(state))


@needs_fair_esm
def test_convert_fair_esm_command_writes_a_loadable_folder(tmp_path):
    reference = random_fair_esm(seed=1)
    torch.save(fair_esm_checkpoint(reference, heads=4), tmp_path / "esm2_tiny.pt")
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert-fair-esm", str(tmp_path / "esm2_tiny.pt"), "--output", str(tmp_path / "out")])
    assert args.func(args) == 0
    loaded = EsmModel.from_pretrained(tmp_path / "out")
    tokens, expected = fair_esm_representations(reference)
    with torch.no_grad():
        ours = loaded(input_ids=tokens, attention_mask=(tokens != 1).long()).last_hidden_state
    assert (ours[tokens != 1] - expected[tokens != 1]).abs().max() < 1e-4
    model = EsmGearNetModel.from_esm_pretrained(tmp_path / "out", gearnet_config=dict(hidden_dims=[8]))
    assert torch.equal(model.esm.encoder.layer[1].output.dense.weight, reference.layers[1].fc2.weight)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "ESM-2 (2 layers" in card and "add_pooling_layer=False" in card
    with pytest.raises(FileNotFoundError):  # the CLI turns it into one line and exit code 1 (tests/test_cli.py)
        bad = parser.parse_args(["convert-fair-esm", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "x")])
        bad.func(bad)


@needs_fair_esm
def test_esm_gearnet_fusion_network_state_dict_converts(tmp_path):
    reference = random_fair_esm(seed=2)
    torch.manual_seed(2)
    structure = GearNetModel(GearNetConfig(input_dim=32, hidden_dims=[16, 16], edge_input_dim=0, num_angle_bin=0))
    state = {f"sequence_model.model.{k}": v for k, v in reference.state_dict().items()}
    state["sequence_model.mapping"] = torch.tensor([6, 5, 8, 14, 7, 11, 23, 12, 4, 17, 13, 16, 15, 9, 20, 21, 18, 10,
                                                    19, 22, -1])  # fmt: skip
    state.update({f"structure_model.{k}": v for k, v in structure.state_dict().items()})
    model = convert_esm_gearnet_state_dict(state)
    assert model.output_dim == 32 + 32 and model.config.gearnet_config.readout == "sum"
    inputs = ProteinStructureProcessor(include_esm_tokens=True)([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"])
    with torch.no_grad():
        out = model(**inputs)
        # ESM half: fair-esm on each chain's sequence (TorchDrug maps residue types the same way), BOS/EOS stripped
        ids = [inputs["esm_input_ids"][inputs["batch"] == i] for i in range(2)]
        sequences = [(str(i), "".join(esm_tokenizer().convert_ids_to_tokens(x))) for i, x in enumerate(ids)]
        _, expected = fair_esm_representations(reference, sequences)
        lengths = torch.bincount(inputs["batch"]).tolist()
        esm = torch.cat([expected[i, 1 : 1 + n] for i, n in enumerate(lengths)])
        assert (out.residue_embeddings[:, :32] - esm).abs().max() < 1e-4
        keys = ("residue_type", "atom_positions", "atom_mask", "batch")
        graph = model.build_graph(*(inputs[k] for k in keys))
        structure.eval()
        torch.testing.assert_close(out.residue_embeddings[:, 32:], torch.cat(structure.encode(graph)[1:], dim=-1))
    # a whole-task file (prefix "model.") converts as well; a GearNet-Edge structure model is refused
    assert isinstance(convert_esm_gearnet_state_dict({f"model.{k}": v for k, v in state.items()}), EsmGearNetModel)
    with pytest.raises(CheckpointError):
        convert_esm_gearnet_state_dict({k: v for k, v in state.items() if not k.startswith("sequence_model")})


@needs_fair_esm
def test_convert_torchdrug_command_handles_esm_gearnet(tmp_path):
    from transformers import AutoModel

    from siamdiff_hf.cli import main

    reference = random_fair_esm(seed=3)
    structure = GearNetModel(GearNetConfig(input_dim=32, hidden_dims=[16], edge_input_dim=0, num_angle_bin=0))
    state = {f"sequence_model.model.{k}": v for k, v in reference.state_dict().items()}
    state.update({f"structure_model.{k}": v for k, v in structure.state_dict().items()})
    torch.save(state, tmp_path / "siamdiff_esm_gearnet.pth")
    args = ["convert-torchdrug", str(tmp_path / "siamdiff_esm_gearnet.pth")]  # architecture recognised from the keys
    assert main([*args, "--output", str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "# ESM-2 (2 layers, 32 wide) + GearNet (residue level, 1 x 16)" in card
    processor = ProteinStructureProcessor.from_pretrained(tmp_path / "hf")
    assert processor.include_esm_tokens
    model = AutoModel.from_pretrained(tmp_path / "hf")
    assert isinstance(model, EsmGearNetModel)
    with torch.no_grad():
        out = model(**processor([DATA / "2xcjA.pdb.gz"]))
    assert out.protein_embeddings.shape == (1, 32 + 16)
