"""A minimal SiamDiff pre-training loop with plain Accelerate: copy it and change what you need.

`siamdiff-hf pretrain` adds stages, checkpoints, exact resume, logging and exports around the same few lines.

    python examples/pretrain_minimal.py [--steps 20] [--output outputs/minimal_encoder]
"""

import argparse
import itertools

import torch
from accelerate import Accelerator

from siamdiff_hf import ProteinStructureProcessor, SiamDiffConfig, SiamDiffForPreTraining, load_afdb
from siamdiff_hf.training import bundled_structures

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--output", default="outputs/minimal_encoder")
parser.add_argument("--sources", nargs="+", default=[str(bundled_structures())], help="files, folders, tars, URLs")
args = parser.parse_args()

accelerator = Accelerator()  # `accelerate launch examples/pretrain_minimal.py` for several GPUs
torch.manual_seed(0)

# Model: a small residue-level GearNet-Edge inside the SiamDiff objective (stage-1 schedule of the paper).
config = SiamDiffConfig(encoder_config={"model_type": "gearnet", "level": "residue", "hidden_dims": [64, 64]})
model = SiamDiffForPreTraining(config)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)  # the paper's optimiser
model, optimizer = accelerator.prepare(model, optimizer)

# Data: an endless stream of structures, cropped to random 150-residue windows and packed into batches.
# (Not passed to `prepare`: with several processes, shard the stream with datasets' split_dataset_by_node.)
processor = ProteinStructureProcessor(crop_length=150, random_crop=True)
dataset = load_afdb(args.sources, files_per_shard=1).shuffle(seed=0)
loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, collate_fn=processor.collate)
batches = itertools.chain.from_iterable(itertools.repeat(loader))  # epoch after epoch

model.train()
for step in range(1, args.steps + 1):
    inputs = next(batches).to(accelerator.device)
    generator = torch.Generator(accelerator.device).manual_seed(step)  # the step's noise, reproducible
    output = model(**inputs, generator=generator)  # one SiamDiff step: both trajectories, both losses
    accelerator.backward(output.loss)
    optimizer.step()
    optimizer.zero_grad()
    if step % 5 == 0 or step == 1:
        losses = f"structure {output.structure_loss.item():.3f}, sequence {output.sequence_loss.item():.3f}"
        accelerator.print(f"step {step}: loss {output.loss.item():.3f} ({losses})")

# Export the encoder alone: `AutoModel.from_pretrained(args.output)` loads it, the processor beside it.
if accelerator.is_main_process:
    encoder = accelerator.unwrap_model(model).encoder
    encoder.save_pretrained(args.output)
    ProteinStructureProcessor().save_pretrained(args.output)  # no crop at inference
    accelerator.print(f"encoder saved to {args.output}")
