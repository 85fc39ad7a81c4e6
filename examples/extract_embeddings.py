"""Embed your own structures with a pretrained encoder: per-protein and per-residue vectors.

    python examples/extract_embeddings.py MODEL_DIR_OR_HUB_ID structure1.pdb structure2.cif.gz ...

MODEL_DIR_OR_HUB_ID is any folder written by `save_pretrained` (e.g. `outputs/quickstart/encoder` after
`siamdiff-hf pretrain configs/quickstart.yaml`, or a converted official checkpoint). Unreadable files are skipped
and reported. The protein embedding is the model's readout (a sum over residues for residue GearNet-Edge, so it
grows with length); `pooling="mean"` gives a length-independent one.
"""

import sys

import torch
from transformers import AutoModel

from siamdiff_hf import ProteinStructureProcessor  # importing siamdiff_hf registers the model classes

model_path, *files = sys.argv[1:]
processor = ProteinStructureProcessor.from_pretrained(model_path)
model = AutoModel.from_pretrained(model_path).eval()

inputs = processor(files, return_tensors="pt", on_error="skip")  # bad files: left out, listed in inputs.skipped
with torch.no_grad():
    outputs = model(**inputs, pooling="mean")

for index, position in enumerate(inputs.kept):
    residues = outputs.residue_embeddings[outputs.batch == index]
    print(
        f"{files[position]}: protein embedding {tuple(outputs.protein_embeddings[index].shape)}, "
        f"residue embeddings {tuple(residues.shape)}"
    )
for _, error in inputs.skipped:
    print(f"skipped {error}")  # the error names the file and the reason
