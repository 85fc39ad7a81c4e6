"""ESM-GearNet: architecture, ESM/structure alignment, windows, chains, invariance, frozen ESM, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from testing_utils import random_rotation
from transformers import AutoConfig, AutoModel, EsmModel

from siamdiff_hf import ProteinStructureProcessor, SiamDiffConfig, SiamDiffForPreTraining
from siamdiff_hf.models.esm_gearnet import EsmGearNetConfig, EsmGearNetModel, esm2_config, esm_parameter_groups
from siamdiff_hf.models.esm_gearnet.modeling_esm_gearnet import plan_windows
from siamdiff_hf.models.gearnet import GearNetModel
from siamdiff_hf.protein import Protein, parse_structure
from siamdiff_hf.protein.processor import esm_tokenizer

DATA = Path(__file__).parents[1] / "data"
TINY_ESM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def tiny_config(**kwargs) -> EsmGearNetConfig:
    return EsmGearNetConfig(esm_config=esm2_config(**TINY_ESM), gearnet_config=dict(hidden_dims=[16, 16]), **kwargs)


def tiny_model(seed: int = 0, **kwargs) -> EsmGearNetModel:
    torch.manual_seed(seed)
    model = EsmGearNetModel(tiny_config(**kwargs)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics so that eval outputs depend on every layer
        for module in model.gearnet.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 1.5)
    return model


def direct_esm(model: EsmGearNetModel, sequence: str) -> torch.Tensor:
    """Return (n, H) ESM last hidden states of one sequence run on its own (<cls> ... <eos>), ends stripped."""
    ids = torch.tensor([esm_tokenizer()(sequence)["input_ids"]])
    with torch.no_grad():
        return model.esm(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0, 1:-1]


@pytest.fixture(scope="module")
def processor():
    return ProteinStructureProcessor(include_esm_tokens=True)


@pytest.fixture(scope="module")
def inputs(processor):
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"])


# --- architecture ---------------------------------------------------------------------------------------------
def test_default_config_is_the_papers_model():
    config = EsmGearNetConfig()
    esm, gearnet = config.esm_config, config.gearnet_config
    sizes = (esm.hidden_size, esm.num_hidden_layers, esm.num_attention_heads, esm.intermediate_size)
    assert sizes == (1280, 33, 20, 5120)
    assert esm.position_embedding_type == "rotary" and esm.token_dropout and not esm.emb_layer_norm_before
    assert (esm.pad_token_id, esm.mask_token_id, esm.vocab_size) == (1, 32, 33)
    assert gearnet.input_dim == 1280 and gearnet.hidden_dims == [512] * 6 and gearnet.num_relation == 7
    assert not gearnet.edge_message_passing and gearnet.readout == "sum"
    assert config.output_dim == 4352 and config.freeze_sequence_model and config.masked_residues_as_glycine
    # the structure half has the 84 keys of the official ESM-GearNet structure model (ESM-GearNet
    # `config/EC/esm_gearnet.yaml` `structure_model`, built by TorchDrug 0.2.1 `models/gearnet.py`): 6 x (conv
    # batch_norm 5 + self_loop 2 + linear 2) + 6 x batch_norms 5, no edge_layers
    shapes = {k: tuple(v.shape) for k, v in GearNetModel(gearnet).state_dict().items()}
    assert len(shapes) == 84 and not any(k.startswith("edge_layers") for k in shapes)
    assert shapes["layers.0.self_loop.weight"] == (512, 1280) and shapes["layers.0.linear.weight"] == (512, 8960)
    with pytest.raises(ValueError, match="esm_window"):
        tiny_config(esm_window=2000)
    with pytest.raises(ValueError, match="residue level"):
        EsmGearNetConfig(gearnet_config=dict(level="atom"))


def test_auto_classes_are_registered():
    config = AutoConfig.for_model("esm_gearnet", esm_config=esm2_config(**TINY_ESM).to_dict())
    assert isinstance(config, EsmGearNetConfig) and config.gearnet_config.input_dim == 32
    assert isinstance(AutoModel.from_config(tiny_config()), EsmGearNetModel)


# --- embeddings of real chains ---------------------------------------------------------------------------------
def test_end_to_end_embeddings_of_real_chains(inputs):
    model = tiny_model()
    out = model(**inputs)
    n, width = inputs["residue_type"].shape[0], 32 + 32
    assert out.residue_embeddings.shape == (n, width) and out.protein_embeddings.shape == (2, width)
    assert model.output_dim == width and torch.isfinite(out.residue_embeddings).all()
    sequences = [parse_structure(DATA / f).sequence for f in ("2xcjA.pdb.gz", "1mr1D.pdb.gz")]
    esm = torch.cat([direct_esm(model, s) for s in sequences])
    torch.testing.assert_close(out.residue_embeddings[:, :32], esm, atol=1e-5, rtol=1e-5)
    # the GearNet half is GearNet over ESM node features; protein = [mean ESM | sum GearNet]
    graph = model.build_graph(
        inputs["residue_type"], inputs["atom_positions"], inputs["atom_mask"], inputs["batch"],
        chain_index=inputs["chain_index"], esm_input_ids=inputs["esm_input_ids"],
    )  # fmt: skip
    structure = torch.cat(model.gearnet.encode(graph)[1:], dim=-1)
    torch.testing.assert_close(out.residue_embeddings[:, 32:], structure)
    first = inputs["batch"] == 0
    expected = torch.cat([out.residue_embeddings[first, :32].mean(0), out.residue_embeddings[first, 32:].sum(0)])
    torch.testing.assert_close(out.protein_embeddings[0], expected)
    # without the processor's tokens the model maps residue types itself, identically
    without = {k: v for k, v in inputs.items() if k != "esm_input_ids"}
    torch.testing.assert_close(model(**without).residue_embeddings, out.residue_embeddings)
    hidden = model(**inputs, output_hidden_states=True).hidden_states
    assert len(hidden) == 3 and torch.equal(hidden[0], out.residue_embeddings[:, :32])


def test_outputs_are_invariant_to_rotation_and_translation(inputs):
    model = tiny_model().double()
    generator = torch.Generator().manual_seed(0)
    rotation = random_rotation(generator)
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    moved = dict(batch, atom_positions=batch["atom_positions"] @ rotation.T + torch.tensor([5.0, -3.0, 12.0]))
    a, b = model(**batch), model(**moved)
    torch.testing.assert_close(a.residue_embeddings, b.residue_embeddings, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(a.protein_embeddings, b.protein_embeddings, atol=1e-8, rtol=1e-8)


def edited_structure() -> tuple[Protein, str]:
    """Return a parsed chain with an unknown residue, a residue without CA (dropped) and MSE, and its sequence."""
    protein = parse_structure(DATA / "2xcjA.pdb.gz").take(slice(0, 30))
    numbers = [int(n) for n in protein.residue_number]
    lines = []
    for line in protein.to_pdb_string().splitlines():
        if line.startswith("ATOM"):
            number = int(line[22:26])
            if number == numbers[5]:
                line = line[:17] + "XYZ" + line[20:]  # non-standard, backbone present -> unknown ('X')
            elif number == numbers[10] and line[12:16].strip() == "CA":
                continue  # no CA -> the residue is dropped
            elif number == numbers[15]:
                line = line[:17] + "MSE" + line[20:]  # modified residue -> its parent (M)
        lines.append(line)
    parsed = Protein.from_bytes("\n".join(lines).encode(), format="pdb", name="edited.pdb")
    letters = list(protein.sequence)
    letters[5], letters[15] = "X", "M"
    del letters[10]
    return parsed, "".join(letters)


def test_esm_and_structure_stay_aligned_with_missing_ca_and_nonstandard_residues(processor):
    protein, sequence = edited_structure()
    assert protein.length == 29 and protein.num_missing_ca == 1 and protein.sequence == sequence
    inputs = processor([protein])
    assert torch.equal(inputs["esm_input_ids"], torch.tensor(esm_tokenizer().convert_tokens_to_ids(list(sequence))))
    model = tiny_model()
    out = model(**inputs)
    assert out.residue_embeddings.shape[0] == 29
    torch.testing.assert_close(out.residue_embeddings[:, :32], direct_esm(model, sequence), atol=1e-5, rtol=1e-5)
    # the structure half sees the same residue rows (CA positions) as a plain GearNet graph
    graph = model.build_graph(inputs["residue_type"], inputs["atom_positions"], inputs["atom_mask"], inputs["batch"])
    torch.testing.assert_close(graph.positions, inputs["atom_positions"][:, 1])


def test_masked_residues_reach_esm_as_glycine_or_mask(inputs):
    masked = torch.zeros_like(inputs["batch"], dtype=torch.bool)
    masked[[3, 50, 100]] = True
    glycine = tiny_model().esm_tokens(inputs["residue_type"], masked, inputs["esm_input_ids"])
    vocab = esm_tokenizer()
    assert (glycine[masked] == vocab.convert_tokens_to_ids("G")).all()
    assert torch.equal(glycine[~masked], inputs["esm_input_ids"][~masked])
    mask = tiny_model(masked_residues_as_glycine=False).esm_tokens(inputs["residue_type"], masked)
    assert (mask[masked] == vocab.mask_token_id).all()


# --- windows and chains ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lengths", "window", "overlap"), [([5, 40, 16, 17, 100], 16, 6), ([1022, 3000], 1022, 256)])
def test_windows_cover_every_residue_once_with_context(lengths, window, overlap):
    boundaries = torch.tensor(np.cumsum([0, *lengths]))
    windows = plan_windows(boundaries, window, overlap)
    total = sum(lengths)
    assert windows.residue_window.shape == (total,) and (windows.length <= window).all()
    residue = torch.arange(total)
    local = residue - windows.start[windows.residue_window]
    assert (local >= 0).all() and (local < windows.length[windows.residue_window]).all()
    assert torch.equal(windows.residue_token, local + 1)
    segment = torch.bucketize(residue, boundaries[1:], right=True)
    window_segment = torch.bucketize(windows.start, boundaries[1:], right=True)
    assert torch.equal(window_segment[windows.residue_window], segment)  # windows never cross sequences
    # context: at least overlap // 2 residues on each side inside the window, unless the sequence ends first
    left, right = local, windows.length[windows.residue_window] - 1 - local
    sequence_left, sequence_right = residue - boundaries[segment], boundaries[segment + 1] - 1 - residue
    assert (left >= sequence_left.clamp(max=overlap // 2)).all()
    assert (right >= sequence_right.clamp(max=overlap // 2)).all()


def test_protein_longer_than_the_window_keeps_every_residue(processor):
    protein = parse_structure(DATA / "3e8mA.pdb.gz")  # 164 residues, windows of 40
    inputs = processor([protein])
    model = tiny_model(esm_window=40, esm_window_overlap=12)
    out = model(**inputs)
    assert out.residue_embeddings.shape == (164, 64) and torch.isfinite(out.residue_embeddings).all()
    windows = plan_windows(torch.tensor([0, 164]), 40, 12)
    assert windows.start.shape[0] > 3
    esm = out.residue_embeddings[:, :32]
    for k, (start, length) in enumerate(zip(windows.start.tolist(), windows.length.tolist())):
        own = windows.residue_window == k
        direct = direct_esm(model, protein.sequence[start : start + length])
        torch.testing.assert_close(esm[own], direct[(torch.nonzero(own).flatten() - start)], atol=1e-5, rtol=1e-5)
    # windows change the context, so the embeddings differ from one 164-residue pass
    full = tiny_model(esm_window=200, esm_window_overlap=12)(**inputs).residue_embeddings[:, :32]
    assert not torch.allclose(esm, full)


def test_one_esm_sequence_per_chain(processor):
    a, b = parse_structure(DATA / "2xcjA.pdb.gz"), parse_structure(DATA / "1mr1D.pdb.gz")
    merged = {k: np.concatenate([a.to_dict()[k], b.to_dict()[k]]) for k in a.to_dict() if k != "id"}
    merged["chain_id"] = np.array(["A"] * a.length + ["B"] * b.length)
    inputs = processor([Protein.from_dict({**merged, "id": "dimer"})])
    model = tiny_model()
    per_chain = model(**inputs)
    expected = torch.cat([direct_esm(model, a.sequence), direct_esm(model, b.sequence)])
    torch.testing.assert_close(per_chain.residue_embeddings[:, :32], expected, atol=1e-5, rtol=1e-5)
    joined = tiny_model(esm_split_chains=False)(**inputs).residue_embeddings[:, :32]
    torch.testing.assert_close(joined, direct_esm(model, a.sequence + b.sequence), atol=1e-5, rtol=1e-5)
    assert per_chain.protein_embeddings.shape == (1, 64)


# --- training ----------------------------------------------------------------------------------------------------
def test_frozen_esm_gets_no_gradient_nor_optimizer_state_and_siamdiff_learns():
    processor = ProteinStructureProcessor(crop_length=50, include_esm_tokens=True)
    inputs = processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz", DATA / "3ny7A.pdb.gz"])
    torch.manual_seed(0)
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=tiny_config())).train()
    assert model.encoder.output_dim == 64 and model.seq_mlp.layers[0].in_features == 64
    assert not model.encoder.esm.training  # frozen ESM stays in eval mode
    esm_before = {k: v.clone() for k, v in model.encoder.esm.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(12):
        out = model(**inputs, generator=torch.Generator().manual_seed(0))  # same noise every step
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    esm_params = set(model.encoder.esm.parameters())
    assert all(p.grad is None for p in esm_params)
    assert not any(p in optimizer.state for p in esm_params) and len(optimizer.state) > 0
    assert all(torch.equal(v, esm_before[k]) for k, v in model.encoder.esm.state_dict().items())
    assert losses[-1] < 0.8 * losses[0], losses


def test_trainable_esm_gets_gradients_and_a_smaller_learning_rate(inputs):
    model = tiny_model(freeze_sequence_model=False, esm_learning_rate_ratio=0.1).train()
    out = model(**inputs)
    out.protein_embeddings.sum().backward()
    query = model.esm.encoder.layer[0].attention.self.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert model.esm.contact_head.regression.weight.grad is None  # unused head, never trained
    groups = model.parameter_groups(1e-3)
    rates = {id(p): group["lr"] for group in groups for p in group["params"]}
    assert rates[id(query)] == pytest.approx(1e-4) and rates[id(model.gearnet.layers[0].linear.weight)] == 1e-3
    assert id(model.esm.contact_head.regression.weight) not in rates
    frozen = esm_parameter_groups(tiny_model(), 1e-3)
    assert len(frozen) == 1 and not any(p in set(tiny_model().esm.parameters()) for p in frozen[0]["params"])


def test_frozen_esm_cache_follows_weight_changes(inputs):
    model = tiny_model()
    calls = []
    model.esm.register_forward_hook(lambda *_: calls.append(1))
    first = model(**inputs).residue_embeddings
    torch.testing.assert_close(model(**inputs).residue_embeddings, first)
    assert len(calls) == 1  # the same tokens again: ESM is not run twice (SiamDiff's two trajectories)
    model.load_state_dict(tiny_model(seed=1).state_dict())
    changed = model(**inputs).residue_embeddings
    assert not torch.allclose(changed[:, :32], first[:, :32])
    torch.testing.assert_close(changed, tiny_model(seed=1)(**inputs).residue_embeddings)


# --- saving and loading --------------------------------------------------------------------------------------------
def test_save_and_load_give_the_same_outputs(tmp_path, inputs):
    model = tiny_model(esm_window=50, esm_window_overlap=10)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, EsmGearNetModel) and isinstance(loaded.config.esm_config.hidden_size, int)
    assert loaded.config.esm_window == 50 and loaded.config.gearnet_config.hidden_dims == [16, 16]
    assert not any(p.requires_grad for p in loaded.esm.parameters())
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.residue_embeddings, b.residue_embeddings)
    assert torch.equal(a.protein_embeddings, b.protein_embeddings)
    # nested in SiamDiff, the loaded encoder keeps its ESM frozen too
    SiamDiffForPreTraining(SiamDiffConfig(encoder_config=tiny_config())).save_pretrained(tmp_path / "siamdiff")
    siamdiff = SiamDiffForPreTraining.from_pretrained(tmp_path / "siamdiff")
    assert isinstance(siamdiff.encoder, EsmGearNetModel)
    assert not any(p.requires_grad for p in siamdiff.encoder.esm.parameters())
    assert all(p.requires_grad for p in siamdiff.encoder.gearnet.parameters())
    siamdiff.encoder.set_esm_frozen(False)
    assert siamdiff.encoder.esm.encoder.layer[0].attention.self.query.weight.requires_grad
    assert not siamdiff.train().encoder.esm_frozen and siamdiff.encoder.esm.training


def test_set_esm_frozen_leaves_the_config_as_built(inputs):
    model = tiny_model()
    model(**inputs)
    assert model.esm_cache.entry is not None
    model.set_esm_frozen(False)
    assert model.config.freeze_sequence_model and not model.esm_frozen and model.esm_cache.entry is None
    assert not model.train().esm_frozen and model.esm.training
    assert all(p.requires_grad for p in model.esm.encoder.parameters())
    model.set_esm_frozen(True)
    assert model.esm_frozen and not model.train().esm.training
    assert not any(p.requires_grad for p in model.esm.parameters())


def test_from_esm_pretrained_loads_a_local_esm_folder(tmp_path, inputs):
    torch.manual_seed(3)
    esm = EsmModel(esm2_config(**TINY_ESM), add_pooling_layer=False)
    esm.save_pretrained(tmp_path)
    model = EsmGearNetModel.from_esm_pretrained(tmp_path, gearnet_config=dict(hidden_dims=[8]), esm_window=64)
    assert model.config.esm_window == 64 and model.output_dim == 32 + 8
    assert model.config.esm_name_or_path == str(tmp_path)
    for key, value in esm.state_dict().items():
        assert torch.equal(model.esm.state_dict()[key], value), key
    assert model.eval()(**inputs).residue_embeddings.shape == (inputs["batch"].shape[0], 40)
