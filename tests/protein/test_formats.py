"""`gunzip`: gzip members inflated exactly (ISA-L where installed), damaged data raising what gzip raises."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from siamdiff_hf.protein import formats
from siamdiff_hf.protein.formats import GZIP_ERRORS, gunzip, maybe_gunzip


def test_gunzip_matches_gzip_on_a_real_structure(data_dir):
    packed = (data_dir / "2xcjA.pdb.gz").read_bytes()
    assert gunzip(packed) == gzip.decompress(packed)
    assert maybe_gunzip(gzip.decompress(packed)) == gzip.decompress(packed)  # plain data unchanged


def test_several_members_and_trailing_bytes_follow_gzip():
    one, two = gzip.compress(b"ATOM first\n"), gzip.compress(b"ATOM second\n")
    assert gunzip(one + two) == b"ATOM first\nATOM second\n"  # every member, as gzip.decompress
    assert gunzip(one + bytes(16)) == gzip.decompress(one + bytes(16))  # zero padding, as gzip tolerates


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_deflate"])
def test_damaged_data_raises_a_gzip_error(damage):
    data = bytearray(gzip.compress(np.random.default_rng(0).bytes(5000)))
    if damage == "truncated":
        data = data[:-40]
    elif damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:
        data[2] = 7  # compression method other than deflate
    with pytest.raises(GZIP_ERRORS):
        gunzip(bytes(data))


def test_isal_is_used_when_installed():
    pytest.importorskip("isal")
    assert formats._inflate.__name__.endswith("isal_zlib")
