"""siamdiff-hf: protein structure encoders and SiamDiff pre-training for the Hugging Face ecosystem."""

__version__ = "0.1.0"
