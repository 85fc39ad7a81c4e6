"""Embed your own structures with a pretrained encoder: per-protein and per-residue vectors.

    python examples/extract_embeddings.py MODEL_DIR_OR_HUB_ID structure1.pdb structure2.cif.gz ...

MODEL_DIR_OR_HUB_ID is any folder written by `save_pretrained` (e.g. `outputs/quickstart/encoder` after
`siamdiff-hf pretrain configs/quickstart.yaml`, or a converted official checkpoint).
"""

import sys

import torch
from transformers import AutoModel

from siamdiff_hf import ProteinStructureProcessor  # importing siamdiff_hf registers the model classes

model_path, *files = sys.argv[1:]
processor = ProteinStructureProcessor.from_pretrained(model_path)
model = AutoModel.from_pretrained(model_path).eval()

with torch.no_grad():
    outputs = model(**processor(files, return_tensors="pt"))

for index, path in enumerate(files):
    residues = outputs.residue_embeddings[outputs.batch == index]
    print(
        f"{path}: protein embedding {tuple(outputs.protein_embeddings[index].shape)}, "
        f"residue embeddings {tuple(residues.shape)}"
    )
