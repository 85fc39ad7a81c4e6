"""SiamDiff / DiffPreT: the objective against brute force, equivariance, masking, learning, save/load, stages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from testing_utils import random_rotation, to64

from siamdiff_hf import STAGES, GearNetConfig, ProteinStructureProcessor, SiamDiffConfig, SiamDiffForPreTraining
from siamdiff_hf.protein import constants as C

DATA = Path(__file__).parents[1] / "data"


def tiny(level: str = "residue", **kwargs) -> SiamDiffForPreTraining:
    encoder = GearNetConfig(level=level, hidden_dims=[16, 16])
    return SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder, **kwargs))


@pytest.fixture(scope="module")
def inputs():
    processor = ProteinStructureProcessor(crop_length=60)
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")


def test_heads_have_reference_shapes():
    model = SiamDiffForPreTraining(SiamDiffConfig())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    d = 3072
    assert shapes == {
        "struct_mlp.layers.0.weight": (d, 2 * d), "struct_mlp.layers.0.bias": (d,),
        "struct_mlp.layers.1.weight": (d, d), "struct_mlp.layers.1.bias": (d,),
        "struct_mlp.layers.2.weight": (1, d), "struct_mlp.layers.2.bias": (1,),
        "dist_mlp.layers.0.weight": (d, 1), "dist_mlp.layers.0.bias": (d,),
        "dist_mlp.layers.1.weight": (d, d), "dist_mlp.layers.1.bias": (d,),
        "dist_mlp.layers.2.weight": (d, d), "dist_mlp.layers.2.bias": (d,),
        "seq_mlp.layers.0.weight": (d, d), "seq_mlp.layers.0.bias": (d,),
        "seq_mlp.layers.1.weight": (d, d), "seq_mlp.layers.1.bias": (d,),
        "seq_mlp.layers.2.weight": (20, d), "seq_mlp.layers.2.bias": (20,),
    }  # fmt: skip
    assert sum(v.numel() for k, v in model.state_dict().items() if k.startswith("encoder.")) > 20_000_000


def test_config_nesting_and_validation():
    config = SiamDiffConfig(encoder_config={"model_type": "gearnet", "level": "atom", "hidden_dims": [8]})
    assert config.level == "atom" and isinstance(config.encoder_config, GearNetConfig)
    assert config.conformer_std == pytest.approx(0.1 * math.pi)
    assert SiamDiffConfig().conformer_std == 0.3
    with pytest.raises(ValueError, match="model_type"):
        SiamDiffConfig(encoder_config={"level": "atom"})
    with pytest.raises(ValueError, match="gamma"):
        SiamDiffConfig(gamma=1.5)


# --- brute force ------------------------------------------------------------------------------------------------
def abar(t: int, beta_start=1e-3, beta_end=0.1, steps=100) -> float:
    value = 1.0
    for s in range(t + 1):
        x = -6 + 12 * s / (steps - 1)
        value *= 1 - (beta_start + (beta_end - beta_start) / (1 + math.exp(-x)))
    return value


def test_structure_target_and_projection_equal_brute_force(inputs):
    torch.manual_seed(0)
    model = tiny().double()
    batch = to64(inputs)
    timesteps = torch.tensor([30, 70])
    generator = torch.Generator().manual_seed(3)
    n = batch["residue_type"].shape[0]
    noise = (torch.randn(n, 3, generator=generator, dtype=torch.float64),) * 2
    out = model(**batch, timesteps=timesteps, structure_noise=noise, conformer_positions=batch["atom_positions"])
    graph = model.encoder.build_graph(**batch)
    x = batch["atom_positions"][:, C.CA_INDEX].tolist()
    protein = batch["batch"].tolist()
    eps = noise[0].tolist()
    noisy = []
    for i in range(n):
        a = abar(int(timesteps[protein[i]]))
        noisy.append([x[i][k] + math.sqrt((1 - a) / a) * eps[i][k] for k in range(3)])
    out_sum = [[0.0] * 3 for _ in range(n)]
    in_sum = [[0.0] * 3 for _ in range(n)]
    out_count, in_count = [0] * n, [0] * n
    for u, v in graph.edge_index.T.tolist():
        a = abar(int(timesteps[protein[v]]))
        d = math.dist(x[u], x[v])
        d_noisy = math.dist(noisy[u], noisy[v])
        s = (d - d_noisy) * math.sqrt(a / (1 - a))
        direction = [(noisy[u][k] - noisy[v][k]) / (d_noisy + 1e-10) for k in range(3)]
        for k in range(3):
            out_sum[u][k] += s * direction[k]
            in_sum[v][k] -= s * direction[k]
        out_count[u] += 1
        in_count[v] += 1
    expected = [
        [out_sum[i][k] / max(out_count[i], 1) + in_sum[i][k] / max(in_count[i], 1) for k in range(3)] for i in range(n)
    ]
    torch.testing.assert_close(out.structure_target, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def single_trajectory_structure_loss(prediction, target, batch) -> float:
    per_graph: dict[int, list[float]] = {}
    for i, b in enumerate(batch.tolist()):
        per_graph.setdefault(b, []).append(0.5 * float(((prediction[i] - target[i]) ** 2).sum()))
    return sum(sum(v) / len(v) for v in per_graph.values()) / len(per_graph)


def test_diffpret_counts_the_single_trajectory_twice(inputs):
    torch.manual_seed(0)
    model = tiny(use_mutual_information=False).eval()
    with torch.no_grad():
        out = model(**inputs, generator=torch.Generator().manual_seed(0))
    single = single_trajectory_structure_loss(out.structure_prediction, out.structure_target, inputs["batch"])
    assert out.structure_loss.item() == pytest.approx(2 * single, rel=1e-5)
    assert out.loss.item() == pytest.approx(0.5 * out.structure_loss.item() + 0.5 * out.sequence_loss.item(), rel=1e-6)


# --- equivariance -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["residue", "atom"])
def test_noise_prediction_is_equivariant_and_losses_invariant(inputs, level):
    torch.manual_seed(0)
    model = tiny(level).double().eval()
    batch = to64(inputs)
    generator = torch.Generator().manual_seed(5)
    n = batch["residue_type"].shape[0] if level == "residue" else int(batch["atom_mask"].sum())
    noise = tuple(torch.randn(n, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    conformer = model.conformer(batch["residue_type"], batch["atom_positions"], batch["atom_mask"], batch["batch"],
                                torch.Generator().manual_seed(1)) if level == "residue" else None  # fmt: skip
    rotation = random_rotation(generator)
    shift = torch.tensor([5.0, -30.0, 12.0], dtype=torch.float64)
    mask = batch["atom_mask"][..., None]
    moved = dict(batch, atom_positions=(batch["atom_positions"] @ rotation.T + shift) * mask)
    moved_conformer = None if conformer is None else (conformer @ rotation.T + shift) * mask
    # Masked residues: N, CA, C survive at atom level, so the masked run's nodes are a subset of atom_mask.
    kwargs = dict(timesteps=torch.tensor([40, 60]))
    a = model(**batch, **kwargs, generator=torch.Generator().manual_seed(9), conformer_positions=conformer,
              structure_noise=None if level == "atom" else noise)  # fmt: skip
    if level == "atom":
        n = a.structure_prediction.shape[0]
        noise = tuple(torch.randn(n, 3, generator=generator, dtype=torch.float64) for _ in range(2))
        a = model(**batch, **kwargs, generator=torch.Generator().manual_seed(9), structure_noise=noise)
    b = model(**moved, **kwargs, generator=torch.Generator().manual_seed(9), conformer_positions=moved_conformer,
              structure_noise=tuple(e @ rotation.T for e in noise))  # fmt: skip
    torch.testing.assert_close(
        b.structure_prediction, a.structure_prediction @ rotation.T.float(), rtol=1e-4, atol=1e-5
    )
    assert a.structure_prediction.abs().max() > 1e-3
    for name in ("loss", "structure_loss", "sequence_loss", "sequence_accuracy"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-5, atol=1e-7)


# --- masking ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["residue", "atom"])
def test_masked_residues_are_hidden_from_the_encoder_in_both_trajectories(inputs, level):
    model = tiny(level, gamma=0.5).eval()
    seen = []
    original = model.encoder.forward

    def spy(*args, graph=None, **kwargs):
        seen.append(graph)
        return original(*args, graph=graph, **kwargs)

    model.encoder.forward = spy
    with torch.no_grad():
        out = model(**inputs, generator=torch.Generator().manual_seed(2), timesteps=torch.tensor([80, 90]))
    assert len(seen) == 2
    masked = torch.zeros(inputs["residue_type"].shape[0], dtype=torch.bool)
    masked[out.masked_residues] = True
    assert masked.sum() > 10
    for graph in seen:
        node_masked = masked[graph.node_residue]
        residue_features = graph.node_features[:, -C.NUM_RESIDUE_FEATURES :]
        assert residue_features[node_masked].abs().sum() == 0
        assert (residue_features[~node_masked].sum(-1) == 1).all()
        source_types = graph.edge_attr[:, : C.NUM_RESIDUE_TYPES].argmax(-1)
        assert (source_types[node_masked[graph.edge_index[0]]] == 0).all()  # masked residues look like GLY
        if level == "atom":  # only N, CA, C of masked residues remain
            assert int(node_masked.sum()) == 3 * int(masked.sum())
    assert torch.equal(seen[0].node_residue, seen[1].node_residue)
    assert torch.equal(seen[0].node_features, seen[1].node_features)


def test_sequence_loss_targets_the_true_residue_types(inputs):
    model = tiny(gamma=0.0).eval()
    hidden = {}
    original = model.encoder.forward

    def spy(*args, graph=None, **kwargs):
        out = original(*args, graph=graph, **kwargs)
        hidden.setdefault("h", []).append(out.node_embeddings)
        return out

    model.encoder.forward = spy
    with torch.no_grad():
        out = model(**inputs, generator=torch.Generator().manual_seed(4))
    index = out.masked_residues
    labels = inputs["residue_type"][index]
    expected = 0.0
    for other in (1, 0):
        ce = torch.nn.functional.cross_entropy(model.seq_mlp(hidden["h"][other][index]), labels, reduction="none")
        per_graph = [0.5 * ce[inputs["batch"][index] == b].mean() for b in range(2)]
        expected += sum(per_graph) / 2
    torch.testing.assert_close(out.sequence_loss, expected, rtol=1e-5, atol=1e-6)
    assert out.structure_loss == 0 and out.loss == out.sequence_loss


# --- learning, save/load, stages ----------------------------------------------------------------------------------
def test_a_few_hundred_steps_lower_both_losses():
    processor = ProteinStructureProcessor(crop_length=80, random_crop=True)
    files = sorted(DATA.glob("*.pdb.gz"))[:4]
    inputs = processor(files, return_tensors="pt")
    torch.manual_seed(0)
    encoder = GearNetConfig(hidden_dims=[32, 32])
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(250):
        out = model(**inputs, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        history.append((out.structure_loss.item(), out.sequence_loss.item(), out.sequence_accuracy.item()))
    first, last = torch.tensor(history[:30]).mean(0), torch.tensor(history[-30:]).mean(0)
    assert last[0] < 0.7 * first[0], (first, last)
    assert last[1] < 0.7 * first[1], (first, last)
    assert last[2] > 0.3  # chance is 0.05


def test_save_and_load_reproduce_the_loss(tmp_path, inputs):
    model = tiny().eval()
    model.save_pretrained(tmp_path / "run")
    loaded = SiamDiffForPreTraining.from_pretrained(tmp_path / "run")
    with torch.no_grad():
        a = model(**inputs, generator=torch.Generator().manual_seed(7))
        b = loaded(**inputs, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.structure_prediction, b.structure_prediction)
    model.encoder.save_pretrained(tmp_path / "encoder")
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(tmp_path / "encoder")
    with torch.no_grad():
        torch.testing.assert_close(encoder(**inputs).protein_embeddings, model.encoder(**inputs).protein_embeddings)


def test_stage_two_starts_from_stage_one(tmp_path, inputs):
    stage1 = tiny()
    stage1.save_pretrained(tmp_path)
    stage2 = SiamDiffForPreTraining.from_pretrained(tmp_path, **STAGES[2])
    assert stage2.config.num_timesteps == 5 and stage2.config.gamma == 0.2
    assert stage2.noise_schedule.alphas_cumprod.shape == (5,)
    for key, value in stage1.state_dict().items():
        assert torch.equal(value, stage2.state_dict()[key]), key
    out = stage2.train()(**inputs, generator=torch.Generator().manual_seed(0))
    assert out.timesteps.max() < 5 and torch.isfinite(out.loss)


@pytest.mark.parametrize("num_mlp_layer", [1, 2, 3])
def test_fused_edge_scores_equal_the_official_heads(num_mlp_layer):
    torch.manual_seed(0)
    model = tiny(num_mlp_layer=num_mlp_layer).double()
    dim = model.encoder.output_dim
    pair, lengths = torch.randn(50, dim, dtype=torch.float64), torch.rand(50, 1, dtype=torch.float64) * 12
    official = model.struct_mlp(torch.cat([pair, model.dist_mlp(lengths)], dim=-1)).squeeze(-1)
    torch.testing.assert_close(model.edge_scores(pair, lengths), official, rtol=1e-10, atol=1e-10)


# --- ablation switches (paper Tables 3 and 9) --------------------------------------------------------------------
def test_diffusion_switches_are_explicit_and_validated():
    from siamdiff_hf.diffusion import STAGE_PRESETS

    assert STAGES is STAGE_PRESETS  # one table
    default = SiamDiffConfig()
    assert default.sequence_diffusion and default.structure_diffusion and default.loss_weights == (0.5, 0.5)
    assert not SiamDiffConfig(gamma=1.0).sequence_diffusion  # the official rule, now a visible setting
    assert not SiamDiffConfig(gamma=0.0).structure_diffusion
    no_sequence = SiamDiffConfig(sequence_diffusion=False)
    assert no_sequence.loss_weights == (1.0, 0.0)
    with pytest.raises(ValueError, match="weight 0"):
        SiamDiffConfig(gamma=1.0, sequence_diffusion=True)
    with pytest.raises(ValueError, match="both off"):
        SiamDiffConfig(sequence_diffusion=False, structure_diffusion=False)
    with pytest.raises(ValueError, match="fixed_timestep"):
        SiamDiffConfig(fixed_timestep=100)
    with pytest.raises(ValueError, match="disagrees with the encoder"):
        SiamDiffConfig(encoder_config=GearNetConfig(level="atom"), level="residue")


def test_switched_off_diffusions_and_fixed_noise_levels(inputs):
    with torch.no_grad():
        out = tiny(sequence_diffusion=False).eval()(**inputs, generator=torch.Generator().manual_seed(0))
        assert out.sequence_loss == 0 and out.masked_residues.numel() == 0 and out.loss == out.structure_loss
        out = tiny(structure_diffusion=False).eval()(**inputs, generator=torch.Generator().manual_seed(0))
        assert out.structure_loss == 0 and out.loss == out.sequence_loss and out.sequence_loss > 0
        out = tiny(fixed_timestep=99).eval()(**inputs, generator=torch.Generator().manual_seed(0))
        assert out.timesteps.tolist() == [99, 99]
        # Mask rate at the last level is 1: every residue of each protein is drawn once on average.
        assert out.masked_residues.numel() == inputs["residue_type"].shape[0]


@pytest.mark.parametrize("level", ["residue", "atom"])
def test_heads_once_per_node_pair_equal_the_official_per_edge_heads(inputs, level):
    """The structure head runs once per node pair (`ProteinGraph.node_pairs`); the official code runs it per edge
    (`struct_predict` on ``[h_u * h_v, dist_mlp(|x_u - x_v|)]``). Loss, prediction and every gradient agree."""
    from siamdiff_hf.models.pretraining_utils import mean_per_graph
    from siamdiff_hf.models.siamdiff.modeling_siamdiff import _Trajectory, project_edges_to_nodes

    torch.manual_seed(0)
    model = tiny(level).double()
    batch = to64(inputs)
    graph = model.encoder.build_graph(**batch)
    noisy = graph.with_positions(graph.positions + 0.5 * torch.randn_like(graph.positions))
    trajectory = _Trajectory(noisy, torch.randn(noisy.num_edges, dtype=torch.float64))
    hidden = torch.randn(noisy.num_nodes, model.encoder.output_dim, dtype=torch.float64, requires_grad=True)
    assert noisy.node_pairs()[0].shape[1] < noisy.num_edges / 1.9  # both directions, several relations

    loss, prediction, target = model._structure_loss(trajectory, hidden, torch.tensor([30, 70]))
    source, destination = noisy.edge_index
    features = torch.cat([hidden[source] * hidden[destination], model.dist_mlp(noisy.edge_lengths().unsqueeze(-1))], -1)
    official = project_edges_to_nodes(noisy, model.struct_mlp(features).squeeze(-1).float())  # as the loss does
    per_node = 0.5 * ((official - target) ** 2).sum(-1)
    official_loss = mean_per_graph(per_node, noisy.node_batch, noisy.num_graphs)
    torch.testing.assert_close(prediction, official, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss, official_loss, rtol=1e-6, atol=1e-7)

    heads = [p for name, p in model.named_parameters() if name.startswith(("struct_mlp", "dist_mlp"))]
    ours = torch.autograd.grad(loss, [hidden, *heads])
    theirs = torch.autograd.grad(official_loss, [hidden, *heads])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
