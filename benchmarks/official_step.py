"""Side by side with the official code: GearNet-Edge forward+backward and the SiamDiff step, ours vs TorchDrug's.

TorchDrug 0.2.1's residue GearNet-Edge (`torchdrug/models/gearnet.py`) and the official SiamDiff task step
(DeepGraphLearning/SiamDiff `siamdiff/task.py` `SiamDiff.forward`, first-stage residue config
`config/pretrain/res_gearnet_1st.yaml`) run in the TorchDrug reference environment; ours run in this package's
environment. Both read the same cropped real chains (written once to a temporary folder as PDB files), use the
same thread count and are timed interleaved (ours, theirs, ours, theirs, ...) in two long-lived worker processes
driven by this script, so machine load hits both sides alike. Writes benchmarks/results/official_step.json.

The official `siamdiff/` folder is read from the mirror at run time (`git archive` into a temporary folder) and
imported from there; nothing of it is copied into this package. Build the reference environment first (benchmarks
only; never a dependency of the package, its tests or CI):

    bash ../shared/reference/torchdrug_venv.sh          # -> ~/.cache/torchdrug-ref
    python benchmarks/official_step.py [--proteins 4] [--crop 150] [--threads 2] [--repeats 3] \
        [--reference-python ~/.cache/torchdrug-ref/bin/python] [--siamdiff-repo PATH] [--precision fp32 bf16] \
        [--reuse-freed-memory]

`--reuse-freed-memory` runs both sides with `siamdiff_hf/training/memory.py`'s allocator setting (malloc keeps
freed blocks instead of page-faulting them in again every step; `training.reuse_freed_memory` of `pretrain`);
without it both run with the allocator's defaults.

Timed on both sides: the encoder's forward + backward of the summed protein embeddings on a ready graph; the full
SiamDiff step (second conformer, masking, graph construction of both trajectories, both encoder passes, heads,
losses, backward). The official conformer (`NoiseTransform`, a dataset transform) runs inside the timed step,
because ours samples the conformer inside the step too.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_REFERENCE_PYTHON = Path.home() / ".cache" / "torchdrug-ref" / "bin" / "python"
DEFAULT_SIAMDIFF_REPO = Path("/work/.mirror/DeepGraphLearning+SiamDiff/repo")
# res_gearnet_1st.yaml: the residue GearNet-Edge and its SiamDiff task, as the official config writes them.
GEARNET = dict(
    input_dim=21, hidden_dims=[512] * 6, batch_norm=True, concat_hidden=True, short_cut=True, readout="sum",
    num_relation=7, edge_input_dim=59, num_angle_bin=8,
)  # fmt: skip
SIAMDIFF = dict(sigma_begin=1e-3, sigma_end=0.1, num_noise_level=100, gamma=0.5, use_MI=True, num_mlp_layer=3)
CONFORMER_SIGMA = 0.3  # NoiseTransform(gaussian, sigma=0.3)


# ----------------------------------------------------------------------------------------------- inputs (driver)
def _residue_blocks(lines: list[str]) -> list[list[str]]:
    """Group the ATOM records of the first chain of the first model into residues, in file order."""
    blocks: list[list[str]] = []
    chain, key = None, None
    for line in lines:
        if line.startswith(("ENDMDL", "END")) and blocks:
            break
        if not line.startswith("ATOM"):
            continue
        if chain is None:
            chain = line[21]
        if line[21] != chain:
            break
        residue = line[17:27]  # name, chain, number, insertion code
        if residue != key:
            blocks.append([])
            key = residue
        blocks[-1].append(line)
    return blocks


def write_cropped_chains(files: list[Path], num_proteins: int, crop: int, folder: Path) -> list[dict]:
    """Write the middle ``crop`` residues of the first ``num_proteins`` chains at least that long as PDB files."""
    written = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            blocks = _residue_blocks(handle.read().splitlines())
        if len(blocks) < crop:
            continue
        start = (len(blocks) - crop) // 2
        out = folder / f"{path.name.split('.')[0]}_{crop}.pdb"
        out.write_text("".join(line + "\n" for block in blocks[start : start + crop] for line in block) + "END\n")
        written.append({"source": path.name, "file": str(out), "residues": crop, "start": start})
        if len(written) == num_proteins:
            break
    if len(written) < num_proteins:
        raise SystemExit(f"official_step: only {len(written)} chains with >= {crop} residues in the inputs")
    return written


def structure_files() -> list[Path]:
    """AlphaFold DB models beside the repo when present, else the bundled PDB chains (both real structures)."""
    afdb = HERE.parent.parent / "shared" / "data" / "afdb"
    files = sorted(afdb.glob("*.pdb")) if afdb.exists() else []
    return files + sorted((HERE.parent / "tests" / "data").glob("*.pdb.gz"))


# --------------------------------------------------------------------------------------------- ours (this venv)
class OursWorker:
    """This package's residue GearNet-Edge and SiamDiff step on the cropped chains."""

    def __init__(self, files: list[str], precision: str):
        sys.path.insert(0, str(HERE.parent))
        from siamdiff_hf import (
            GearNetConfig,
            GearNetModel,
            ProteinStructureProcessor,
            SiamDiffConfig,
            SiamDiffForPreTraining,
            parse_structure,
        )

        proteins = [parse_structure(f) for f in files]
        self.inputs = dict(ProteinStructureProcessor()(proteins, return_tensors="pt"))
        self.precision = precision
        encoder_config = GearNetConfig()
        self.encoder = GearNetModel(encoder_config).train()
        keys = ("residue_type", "atom_positions", "atom_mask", "batch", "residue_index", "chain_index")
        self.graph = self.encoder.build_graph(**{k: self.inputs[k] for k in keys if k in self.inputs})
        self.siamdiff = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder_config)).train()
        self.generator = torch.Generator().manual_seed(0)
        self.info = {
            "residues": int(self.inputs["residue_type"].shape[0]),
            "nodes": self.graph.num_nodes,
            "edges": self.graph.num_edges,
            "encoder_parameters": sum(p.numel() for p in self.encoder.parameters()),
            "siamdiff_parameters": sum(p.numel() for p in self.siamdiff.parameters()),
        }

    def encoder_step(self) -> None:
        with _autocast(self.precision):
            out = self.encoder(graph=self.graph)
        out.protein_embeddings.float().sum().backward()
        self.encoder.zero_grad(set_to_none=True)

    def siamdiff_step(self) -> None:
        with _autocast(self.precision):
            out = self.siamdiff(**self.inputs, generator=self.generator)
        out.loss.backward()
        self.siamdiff.zero_grad(set_to_none=True)


# -------------------------------------------------------------------------------- theirs (TorchDrug reference)
class TheirsWorker:
    """TorchDrug 0.2.1's GearNet-Edge and the official SiamDiff task (imported from `siamdiff_root`)."""

    def __init__(self, files: list[str], precision: str, siamdiff_root: str):
        sys.path.insert(0, siamdiff_root)
        from siamdiff import task as official_task
        from siamdiff import transform as official_transform
        from torchdrug import data, layers, models
        from torchdrug.layers import geometry

        proteins = [data.Protein.from_pdb(f) for f in files]  # AlphaFoldDB's load_pdbs defaults
        self.packed = data.Protein.pack(proteins)
        self.packed.view = "residue"  # transforms.ProteinView("residue")
        self.precision = precision

        def construction():
            return layers.GraphConstruction(
                node_layers=[geometry.AlphaCarbonNode()],
                edge_layers=[
                    geometry.SequentialEdge(max_distance=2),
                    geometry.SpatialEdge(radius=10.0, min_distance=5),
                    geometry.KNNEdge(k=10, min_distance=5),
                ],
                edge_feature="gearnet",
            )

        self.encoder = models.GearNet(**GEARNET).train()
        self.graph = construction()(self.packed.clone())
        model = models.GearNet(**GEARNET)
        self.task = official_task.SiamDiff(model, graph_construction_model=construction(), **SIAMDIFF)
        self.task.train()
        self.noise = official_transform.NoiseTransform(noise_type="gaussian", sigma=CONFORMER_SIGMA)
        self.info = {
            "residues": int(self.packed.num_residue),
            "nodes": int(self.graph.num_node),
            "edges": int(self.graph.num_edge),
            "encoder_parameters": sum(p.numel() for p in self.encoder.parameters()),
            "siamdiff_parameters": sum(p.numel() for p in self.task.parameters()),
        }

    def encoder_step(self) -> None:
        with _autocast(self.precision):
            out = self.encoder(self.graph, self.graph.node_feature.float())
        out["graph_feature"].float().sum().backward()
        self.encoder.zero_grad(set_to_none=True)

    def siamdiff_step(self) -> None:
        batch = self.noise({"graph": self.packed.clone()})  # adds "graph2", the perturbed conformer
        with _autocast(self.precision):
            loss, _ = self.task(batch)
        loss.backward()
        self.task.zero_grad(set_to_none=True)


def reuse_freed_memory() -> bool:
    """Call this package's `siamdiff_hf/training/memory.py` (standard library only, so the reference environment
    loads it by path too): malloc keeps freed blocks, as `training.reuse_freed_memory` makes a run do."""
    spec = importlib.util.spec_from_file_location("siamdiff_memory", HERE.parent / "siamdiff_hf/training/memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reuse_freed_memory()


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def serve(args: argparse.Namespace) -> None:
    """Worker loop: build once, then answer 'encoder' / 'siamdiff' lines with one timed step each (JSON lines)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reused = reuse_freed_memory() if args.reuse_freed_memory else False
    files = args.files.split(os.pathsep)
    if args.worker == "ours":
        worker = OursWorker(files, args.precision)
    else:
        worker = TheirsWorker(files, args.precision, args.siamdiff_root)
    ready = {"ready": True, "threads": torch.get_num_threads(), "reuse_freed_memory": reused}
    print(json.dumps({**ready, **worker.info}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        step = {"encoder": worker.encoder_step, "siamdiff": worker.siamdiff_step}[command]
        start = time.perf_counter()
        step()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


# ------------------------------------------------------------------------------------------------------ driver
class Worker:
    """A worker subprocess speaking the JSON-lines protocol of `serve`."""

    def __init__(self, python: str, side: str, files: list[str], args: argparse.Namespace, siamdiff_root: str):
        command = [
            python, str(Path(__file__).resolve()), "--worker", side, "--files", os.pathsep.join(files),
            "--threads", str(args.threads), "--precision", args.current_precision, "--siamdiff-root", siamdiff_root,
            *(["--reuse-freed-memory"] if args.reuse_freed_memory else []),
        ]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
        self.side = side
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"official_step: the {self.side} worker exited (code {self.process.wait()})")
        return json.loads(line)

    def time(self, command: str) -> float:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()["seconds"]

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)


def summarise(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_s": ordered[len(ordered) // 2], "min_s": ordered[0], "all_s": times}


def compare(args: argparse.Namespace, files: list[str], siamdiff_root: str, save=lambda result: None) -> dict:
    """Interleave ours and theirs for one precision; return per-side timings, graph sizes and ratios."""
    ours = Worker(sys.executable, "ours", files, args, siamdiff_root)
    theirs = Worker(args.reference_python, "theirs", files, args, siamdiff_root)
    result = {"ours": {"graph": ours.info}, "theirs": {"graph": theirs.info}}
    loads = []
    for command in args.steps:
        for worker in (ours, theirs):  # warm-up (one untimed step each)
            worker.time(command)
        times = {"ours": [], "theirs": []}
        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            for worker in (ours, theirs):
                times[worker.side].append(worker.time(command))
            print(command, {k: round(v[-1], 3) for k, v in times.items()}, flush=True)
        for side in ("ours", "theirs"):
            result[side][command] = summarise(times[side])
        medians = {side: result[side][command]["median_s"] for side in ("ours", "theirs")}
        result[f"{command}_speedup_median"] = medians["theirs"] / medians["ours"]
        pairs = sorted(t / o for o, t in zip(times["ours"], times["theirs"]))
        result[f"{command}_speedup_per_pair_median"] = pairs[len(pairs) // 2]
        result["load_average_1min_during"] = loads
        save(result)  # partial results survive an interrupted run
    ours.close()
    theirs.close()
    return result


def official_siamdiff(repo: Path, folder: Path) -> str:
    """Extract the official `siamdiff/` package from the bare mirror into ``folder``; return the import root."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", "HEAD", "siamdiff"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    (folder / "COMMIT").write_text(commit.stdout)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proteins", type=int, default=4)
    parser.add_argument("--crop", type=int, default=150, help="residues per chain (paper: random crops of 150)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", nargs="+", default=["encoder", "siamdiff"], choices=["encoder", "siamdiff"])
    parser.add_argument("--reference-python", default=str(DEFAULT_REFERENCE_PYTHON))
    parser.add_argument("--siamdiff-repo", type=Path, default=DEFAULT_SIAMDIFF_REPO, help="bare git mirror")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "official_step.json")
    parser.add_argument(
        "--reuse-freed-memory",
        action="store_true",
        help="both sides with siamdiff_hf/training/memory.py's allocator setting",
    )
    # worker mode (internal)
    parser.add_argument("--worker", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--siamdiff-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.precision = args.precision[0]
        serve(args)
        return
    if not Path(args.reference_python).exists():
        raise SystemExit(f"official_step: no reference Python at {args.reference_python} (run torchdrug_venv.sh)")
    if not (args.siamdiff_repo / "HEAD").exists() and not (args.siamdiff_repo / ".git").exists():
        raise SystemExit(f"official_step: --siamdiff-repo {args.siamdiff_repo} is not a git repository")
    sys.path.insert(0, str(HERE))
    from common import environment

    with tempfile.TemporaryDirectory(prefix="official_step_") as tmp:
        folder = Path(tmp)
        (folder / "official").mkdir()
        siamdiff_root = official_siamdiff(args.siamdiff_repo, folder / "official")
        chains = write_cropped_chains(structure_files(), args.proteins, args.crop, folder)
        files = [c["file"] for c in chains]
        results = {
            "what": "ours / theirs side by side, interleaved; speedup = theirs_s / ours_s (>1: ours faster)",
            "under_load": "2-core machine shared with other jobs: see load averages; ratios are what to read",
            "official_siamdiff_commit": (folder / "official" / "COMMIT").read_text().strip(),
            "chains": [{k: v for k, v in c.items() if k != "file"} for c in chains],
            "threads": args.threads,
            "repeats": args.repeats,
        }

        def save(result: dict) -> None:
            results[args.current_precision] = result
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps({"environment": environment(), **results}, indent=2) + "\n")

        for precision in args.precision:
            args.current_precision = precision
            save(compare(args, files, siamdiff_root, save))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
