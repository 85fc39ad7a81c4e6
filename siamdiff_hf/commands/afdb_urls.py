"""`siamdiff-hf afdb-urls`: print AlphaFold DB tar URLs of the paper's 21 model-organism proteomes."""

from __future__ import annotations

import argparse

from ..cli import example_epilog


def _species(value: str) -> list[int | str]:
    items: list[int | str] = []
    for part in value.split(","):
        part = part.strip()
        if "-" in part and all(p.isdigit() for p in part.split("-", 1)):
            start, stop = (int(p) for p in part.split("-", 1))
            items.extend(range(start, stop + 1))
        elif part.isdigit():
            items.append(int(part))
        elif part:
            items.append(part)
    return items


def run(args: argparse.Namespace) -> int:
    """Print one URL per line (optionally with the organism); return 0."""
    from siamdiff_hf.data.afdb import AFDB_BASE_URL, AFDB_MODEL_ORGANISMS, afdb_proteome_urls

    base_url = args.base_url or AFDB_BASE_URL
    urls = afdb_proteome_urls(args.species, swissprot=args.swissprot, version=args.version, base_url=base_url)
    names = {f"{p}_{t}_{m}": organism for p, t, m, organism in AFDB_MODEL_ORGANISMS}
    for url in urls:
        organism = names.get(url.rsplit("/", 1)[-1].rsplit("_v", 1)[0], "Swiss-Prot")
        print(f"{url}\t{organism}" if args.with_names else url)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `afdb-urls` (the AFDB tables are imported only when the command runs)."""
    parser = subparsers.add_parser(
        "afdb-urls",
        help="list AlphaFold DB proteome tar URLs (the 21 model organisms SiamDiff pre-trained on)",
        description=(
            "Print the AlphaFold DB tar URLs of TorchDrug's AlphaFoldDB species 0-20 (the 21 model-organism "
            "proteomes SiamDiff pre-trained on), optionally plus Swiss-Prot. Pass them to load_afdb(...) to "
            "stream them, or to `siamdiff-hf prepare-afdb` to convert them to Parquet."
        ),
        epilog=example_epilog(
            "siamdiff-hf afdb-urls --species 0-4,HUMAN --with-names",
            "siamdiff-hf prepare-afdb $(siamdiff-hf afdb-urls --species ECOLI) -o afdb_parquet/",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--species", type=_species, default=None,
        help="ids (0-20, ranges like 0-4) or mnemonics (HUMAN,ECOLI), comma-separated; default all 21",
    )  # fmt: skip
    parser.add_argument("--swissprot", choices=("pdb", "cif"), default=None, help="also list the Swiss-Prot tar")
    parser.add_argument("--version", type=int, default=4, help="AFDB release in the file names (default 4)")
    parser.add_argument("--base-url", default=None, help="mirror or release folder (default: AlphaFold DB's FTP)")
    parser.add_argument("--with-names", action="store_true", help="append a tab and the organism name")
    parser.set_defaults(func=run)
    return parser
