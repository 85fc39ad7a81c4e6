"""CPU memory reuse (`training/memory.py`): after `reuse_freed_memory`, freed large blocks come back without page
faults; the numerics it relies on (no kernel reads a buffer it has not written) hold for the sparse products."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from siamdiff_hf.graph.aggregation import _quiet_csr
from siamdiff_hf.training.memory import _glibc

CHURN = textwrap.dedent(
    """
    import resource, torch
    from siamdiff_hf.training.memory import reuse_freed_memory

    def faults_of_churn():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            block = torch.ones(12_500_000)  # 50 MB: above glibc's largest mmap threshold (32 MiB)
            del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_churn()
    default = faults_of_churn()
    applied = reuse_freed_memory()
    faults_of_churn()  # the first block after the switch still grows the heap
    print(default, applied, faults_of_churn(), reuse_freed_memory())
    """
)


@pytest.mark.skipif(_glibc() is None, reason="mallopt is glibc's")
def test_freed_large_blocks_are_reused_without_page_faults():
    """In a fresh process (the setting is process-wide): 50 MB blocks fault in every time by default, not after."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}  # torch's huge-page switch
    out = subprocess.run([sys.executable, "-c", CHURN], check=True, capture_output=True, text=True, env=env)
    out = out.stdout.split()
    default, applied, reused, again = int(out[0]), out[1], int(out[2]), out[3]
    assert applied == again == "True"
    # Four 50 MB blocks: 48,000 faults of 4 KiB pages, or about 100 where the kernel backs them with huge pages.
    assert default > 50
    assert reused < default / 20


def test_beta_zero_sparse_products_never_read_their_buffer():
    """`graph/aggregation.py` writes CSR products into `new_empty` buffers with beta = 0; with freed blocks reused
    those hold old data (here NaN), which must not reach the result."""
    dense = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [4.0, 0.0, 5.0]])
    x = torch.randn(3, 7)
    out = torch.full((4, 7), float("nan"))
    with _quiet_csr():
        torch.addmm(out, dense.to_sparse_csr(), x, beta=0, out=out)
    torch.testing.assert_close(out, dense @ x)
