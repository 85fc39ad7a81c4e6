"""`read_cif_records`: the ``_atom_site`` loop of an mmCIF file read with numpy, as gemmi would read it.

gemmi (``gemmi.cif.read_string`` + ``make_structure_from_block`` + ``FlatStructure``) spends 5-12 ms on a
400-residue AlphaFold DB model building a document of strings and a hierarchy; this reader about 2 ms. It
tokenises only the ``_atom_site`` loop with whole-array numpy operations (no Python loop over rows, atoms or
tokens) and returns the first model's records in file order, with the values gemmi gives each row. It is a fast
path, not a second parser: whenever the file is beyond what it reads for certain it returns None, and the caller
hands the file to gemmi, whose errors then name the problem. Files whose loop lines all have one length and
aligned columns (AlphaFold DB, wwPDB, Biopython's MMCIFIO) take a faster route that reads every column at a
fixed byte offset of every line.

gemmi facts relied on (gemmi 0.7.5, the version installed; paths in the gemmi repository):

- ``src/mmcif.cpp`` ``read_atom_sites``: ``block.find("_atom_site.", ...)`` requires the tags ``id``,
  ``type_symbol``, ``label_alt_id``, ``label_asym_id``, ``Cartn_x/y/z`` (without one of them the table is empty and
  the structure has no atoms); the rest are optional. ``RowAccess(table, auth, label)`` reads chain, residue name,
  atom name and residue number from the ``auth_`` column (``auth_asym_id``, ``auth_comp_id``, ``auth_atom_id``,
  ``auth_seq_id``) and, row by row, from the ``label_`` column where the ``auth_`` value is null (``?`` or
  ``.``) or the ``auth_`` column is absent. The insertion code is ``as_char(pdbx_PDB_ins_code, ' ')``; occupancy
  and B are ``(float) as_number(...)`` where not null, else the ``Atom`` defaults 1.0 and 20.0
  (``include/gemmi/model.hpp``); coordinates are ``as_number``. A new model starts where
  ``pdbx_PDB_model_num`` changes, found or added by ``as_int(num, 0)`` (``Structure::find_or_add_model``):
  ``models[0]``, the first model, is the model number of the first row, and holds every row with that number.
  Rows are appended in file order; within a run of rows of one chain a row joins the residue it matches
  (``Chain::find_or_add_residue``: same number, same name, insertion codes equal up to case, ``SeqId::operator==``
  in ``include/gemmi/seqid.hpp``), so gemmi's order differs from file order only where a residue's rows are split
  within a chain; the parsing rules give the same `Protein` either way. ``label_seq_id`` and
  ``pdbx_formal_charge`` are read with ``as_int`` (throws on a non-integer), ``label_alt_id`` with ``as_char``
  (throws on 2+ characters); files where these would throw are left to gemmi. Residue names of the ``~``
  aliases of ``_chem_comp`` are renamed (``restore_full_ccd_codes``); those files are left to gemmi too.
- ``include/gemmi/cifdoc.hpp``: ``is_null`` is a one-character ``?`` or ``.``; ``as_string`` of a null is ``""``
  and of a quoted value strips the quotes (quoted values are left to gemmi here); ``as_int`` is
  ``string_to_int(s, true)`` (``include/gemmi/atox.hpp``): ``[+-]?[0-9]+`` and nothing else. Tags match case-
  insensitively; duplicate tags are an error (``check_for_duplicates``).
- ``include/gemmi/numb.hpp`` ``as_number``: skips one leading ``+`` and parses with fast_float (correctly rounded,
  ``include/gemmi/third_party/fast_float.h``: ``[-]digits[.digits]`` with a digit on either side of the point);
  anything else gives NaN (left to gemmi). A decimal with at most 15 digits is an integer mantissa below 2**53
  over an exact power of ten, so ``mantissa / 10.0**fraction_digits`` is the same correctly rounded double (the
  fast path of fast_float computes exactly this); ``-0.0`` keeps its sign.
- ``include/gemmi/cif.hpp`` (the grammar): whitespace is space, tab, CR and LF; ``#`` after whitespace starts a
  comment; a value starting with ``'``, ``"``, ``_``, ``$``, ``#`` or a ``;`` at a line start is not a plain
  token, nor is a keyword (``data_``/``save_`` prefixes, ``loop_``/``stop_``/``global_`` words, any case); bytes
  outside ``!``..``~`` cannot appear in an unquoted value.
- ``src/flat.cpp`` ``FlatStructure``: chain, residue, atom, subchain (``label_asym_id``) and entity
  (``label_entity_id``) names of 8+ characters are an error (so names here have at most 7 bytes); names are
  stored zero-padded in 8 bytes.

Beyond the loop, only this is checked: the file starts with its block header (whitespace and comments before
``data_``); no other ``data_``, ``save_`` or ``global_`` keyword and no other ``_atom_site.`` tag stands outside
the loop (any case; such text inside a quoted value or a text field gives None too); the rows end at EOF or at a
``#`` line followed by a tag, a keyword or EOF. The other items are not parsed: a file that gemmi rejects for an
error elsewhere (an unterminated quote, a ragged loop of another category) can still be read here.
"""

from __future__ import annotations

import re
import sys
import threading

import numpy as np

from siamdiff_hf.protein.records import AtomRecords

_PREFIX = b"_atom_site."
_REQUIRED = ("id", "type_symbol", "label_alt_id", "label_asym_id", "cartn_x", "cartn_y", "cartn_z")
_MAX_NAME = 7  # FlatStructure rejects names of 8+ characters
_MAX_DIGITS = 15  # a mantissa below 10**15 < 2**53: exact in float64
_MAX_INT_DIGITS = 9  # fits int32

# whitespace and comments, each matched one way only (no backtracking blow-up); then the first block's header
_SKIP = re.compile(rb"(?:[ \t\r\n]|#[^\n]*(?:\n|\Z))*")
_FIRST_BLOCK = re.compile(_SKIP.pattern + rb"[dD][aA][tT][aA]_")
_TAG_LINES = re.compile(rb"(?:_[!-~ \t\r]*\n)*")  # lines of tags: '_' then printable ASCII and blanks

# A line that starts with one of these may end the loop (a tag, a comment, a keyword: checked by `_keywords`).
_LINE_END_CANDIDATE = np.zeros(256, dtype=bool)
_LINE_END_CANDIDATE[list(b"_#dDsSlLgG")] = True
# A token that starts with one of these is not a plain value: quotes, a comment, a save-frame reference, a text
# field, a tag.
_NOT_PLAIN_FIRST = np.zeros(256, dtype=bool)
_NOT_PLAIN_FIRST[list(b"'\"#$;_")] = True

_U64 = np.uint64
_SPACES = _U64(0x2121212121212121)
_HIGH_BITS = _U64(0x8080808080808080)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # masks of a word's first k bytes
_LOW_BYTES[8] = _U64(2**64 - 1)
_ONES = _U64(0x0101010101010101)
_P10 = 10 ** np.arange(19, dtype=np.int64)
_F10 = 10.0 ** np.arange(19)
# per byte index of the point in a right-aligned token (8: none): the bytes before it, the digits after it
_BELOW_POINT = np.append(_LOW_BYTES[:8], _U64(0))
_FRACTION_DIGITS = np.array([7, 6, 5, 4, 3, 2, 1, 0, 0])
_SWAR_STEPS = [
    (_U64(8 << k), _U64(10 ** (1 << k)), _U64(m))
    for k, m in enumerate((0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF, 0x00000000FFFFFFFF))
]

_LOWER8 = _U64(0x2020202020202020)  # OR-ing it lower-cases the ASCII letters of a word
_DATA, _SAVE, _LOOP, _STOP, _GLOBAL = (
    _U64(int.from_bytes(w, "little")) for w in (b"data", b"save", b"loop", b"stop", b"global")
)
_TAG_HEAD, _TAG_TAIL = (_U64(int.from_bytes(bytes(c | 0x20 for c in w), "little")) for w in (b"_atom_si", b"te."))


def read_cif_records(data: bytes) -> AtomRecords | None:
    """Return the first model's ``_atom_site`` records of uncompressed mmCIF text, or None to defer to gemmi.

    The records are in file order, with the values gemmi 0.7.5 gives each row (module docstring): chain, residue
    and atom names as zero-padded 8-byte integers (``uint64``), ``resnum`` int32, ``icode`` uint8 (32 for none),
    ``occ`` and ``b`` float32, ``pos`` float64 (N, 3), ``serial`` None. None means "not certainly what gemmi
    reads": no single ``_atom_site`` loop in a single data block, quoted or text-field values, comments or
    keywords inside the loop, a ragged loop, a missing column, a number that is not a plain decimal, names of 8+
    characters, non-ASCII or control bytes, and the other cases where gemmi would fail or read differently
    (listed in the module docstring). Never raises on bad input.
    """
    if not isinstance(data, bytes) or sys.byteorder != "little":
        return None
    loop = _find_loop(data)
    if loop is None:
        return None
    header_start, first_block, tags, body_start = loop
    columns = {tag: i for i, tag in enumerate(tags)}
    if any(tag not in columns for tag in _REQUIRED):
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    table = _aligned_table(data, arr, body_start, len(tags))
    if table is None:
        table = _general_table(data, arr, body_start, len(tags))
    if table is None or not _alone(arr, header_start, first_block, table.end):
        return None
    return _records(table, columns)


# --- locating the loop -------------------------------------------------------------------------------------------


def _find_loop(data: bytes) -> tuple[int, int, list[str], int] | None:
    """Return (first tag's offset, the block header's ``_`` offset, lower-case tag names, body offset) or None.

    The loop must be written the usual way: a ``loop_`` line, then lines of ``_atom_site.`` tags only, then the
    values from the next line on.
    """
    first = _FIRST_BLOCK.match(data)
    start = data.find(_PREFIX)
    if first is None or start <= 0 or data[start - 1] != 10:
        return None
    line_start = data.rfind(b"\n", 0, start - 1) + 1
    if data[line_start:start].strip().lower() != b"loop_":
        return None
    header = _TAG_LINES.match(data, start)  # lines starting with "_", printable ASCII
    pos = header.end()
    if pos >= len(data) or data[pos - 1] != 10:
        return None
    tokens = data[start:pos].lower().split()
    if not all(token.startswith(_PREFIX) for token in tokens) or len(set(tokens)) != len(tokens):
        return None
    tags = [token[len(_PREFIX) :].decode("ascii") for token in tokens]
    return start, first.end() - 1, tags, pos


def _loop_ends_at(data: bytes, pos: int) -> bool:
    """Return True if the loop's values end at line start ``pos``: EOF, or a ``#`` line and then, after only
    whitespace and comments, EOF, a tag or a keyword (a comment alone does not end a loop: values may follow).

    Whatever follows the rows straight away, without a ``#`` line, is left to gemmi: a damaged row starting with
    ``_`` or ``loop_`` would otherwise cut the loop short silently (gemmi fails on the rest); the writers of
    mmCIF files (wwPDB, AlphaFold DB, gemmi, Biopython) put a ``#`` line between items.
    """
    end = _SKIP.match(data, pos).end()
    if end == len(data):
        return True
    if data.find(b"#", pos, end) < 0:
        return False
    if data[end] == 95:
        return True
    low = data[end : end + 8].lower()
    if low.startswith((b"data_", b"save_")):
        return True
    return any(
        low.startswith(w) and (len(low) == len(w) or low[len(w)] <= 32) for w in (b"loop_", b"stop_", b"global_")
    )


def _keywords(arr: np.ndarray, at: np.ndarray, loops: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return, per offset in ``at`` (an ``_``), whether it ends the first word of a token that is a block or frame
    keyword (``data_``, ``save_``, ``global_``, any case), a loop keyword (``loop_``, ``stop_``), or begins an
    ``_atom_site.`` tag. Reads the 8 bytes before and the 16 from each offset as words (offsets below 8 read
    the file's first 8 bytes: no keyword ends there but the first block's header). The words are screened
    first; the few offsets that may match are then checked fully."""
    none = np.zeros(len(at), dtype=bool)
    if len(at) == 0:
        return none, none, none
    if at.max() + 16 > len(arr):  # (offsets may lie up to 6 bytes past the end: candidates + 6)
        arr = np.concatenate((arr, np.zeros(32, dtype=np.uint8)))
    words = np.ndarray((len(arr) - 7,), dtype=np.uint64, buffer=arr, strides=(1,))
    low = words[np.maximum(at - 8, 0)] | _LOWER8
    word4 = low >> _U64(32)  # the 4 bytes before, lower-cased
    maybe = (word4 == _DATA) | (word4 == _SAVE)
    if loops:  # (not looked for when loops=False: then the loop flags are all False)
        maybe |= (word4 == _LOOP) | (word4 == _STOP)
    maybe |= (low >> _U64(16)) == _GLOBAL
    maybe |= (words[at] | _LOWER8) == _TAG_HEAD
    candidates = np.flatnonzero(maybe)
    if len(candidates) == 0:
        return none, none, none
    at = at[candidates]
    before, here, after = words[np.maximum(at - 8, 0)], words[at], words[at + 8]
    low, word4 = before | _LOWER8, (before | _LOWER8) >> _U64(32)
    underscore = (here & _U64(0xFF)) == 95
    word_ends = ((here >> _U64(8)) & _U64(0xFF)) <= 32
    start4 = (((before >> _U64(24)) & _U64(0xFF)) <= 32) & underscore  # a 4-letter word starts a token
    block, loop, tag = none.copy(), none.copy(), none.copy()
    block[candidates] = start4 & ((word4 == _DATA) | (word4 == _SAVE))
    block[candidates] |= (
        (((before >> _U64(8)) & _U64(0xFF)) <= 32) & underscore & word_ends & ((low >> _U64(16)) == _GLOBAL)
    )
    loop[candidates] = start4 & word_ends & ((word4 == _LOOP) | (word4 == _STOP))
    head = ((before >> _U64(56)) <= 32) & ((here | _LOWER8) == _TAG_HEAD)
    tag[candidates] = head & (((after | _LOWER8) & _U64(0xFFFFFF)) == _TAG_TAIL)
    return block, loop, tag


def _alone(arr: np.ndarray, header_start: int, first_block: int, body_end: int) -> bool:
    """Return True if nothing outside the loop is another data block, a save frame or another ``_atom_site`` item.

    Looks at the bytes around each ``_`` before and after the loop (a few thousand in a file): only the first
    block's header may be a block keyword, and only the loop's tags may start ``_atom_site.`` (any case; gemmi
    matches tags case-insensitively and rejects duplicates). Such text inside a quoted value or a text field
    gives None too.
    """
    before = np.flatnonzero(arr[:header_start] == 95)
    after = np.flatnonzero(arr[body_end:] == 95) + body_end
    at = np.concatenate((before[before != first_block], after))
    if len(at) == 0:
        return True
    block, _, tag = _keywords(arr, at, loops=False)
    return not (block.any() or tag.any())


# --- tokenising the loop -----------------------------------------------------------------------------------------


class _Table:
    """The loop's tokens: ``words(columns, k)`` gives bytes ``8k..8k+7`` of each row's tokens in ``columns`` as
    little-endian uint64, column-major (len(columns), nrows); ``end`` is the offset where the loop's values end;
    ``widths``: per column the bytes from a token's start to the next column's, where that is fixed (else None)."""

    nrows: int
    end: int
    widths: np.ndarray | None = None

    def words(self, columns: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class _AlignedTable(_Table):
    """Rows of equal-length lines whose tokens start at the same offsets on every line."""

    def __init__(self, arr: np.ndarray, body_start: int, width: int, nrows: int, offsets: np.ndarray):
        self.nrows, self.end, self.offsets = nrows, body_start + nrows * width, offsets
        self.widths = np.diff(offsets, append=width - 1)
        self.arr, self.body_start, self.width, self.view = arr, body_start, width, None

    def words(self, columns: np.ndarray, k: int) -> np.ndarray:
        at = self.offsets[columns] + 8 * k
        last = self.end - self.width + int(at.max()) + 8  # one past the last byte read
        if last > len(self.arr):  # words run past the end of the file: read a copy with zero bytes after it
            self.arr = np.concatenate((self.arr, np.zeros(24, dtype=np.uint8)))
        # the uint64 at each byte offset of the lines, offset-major
        shape, strides = (int(at.max()) + 1, self.nrows), (1, self.width)
        view = np.ndarray(shape, dtype=np.uint64, buffer=self.arr, offset=self.body_start, strides=strides)
        return view[at]


class _GeneralTable(_Table):
    """Rows of whitespace-separated tokens, anywhere on any lines."""

    def __init__(self, buf: np.ndarray, starts: np.ndarray, end: int):
        self.nrows, self.end, self.starts = len(starts), end, np.ascontiguousarray(starts.T)
        self.view = np.ndarray((len(buf) - 7,), dtype=np.uint64, buffer=buf, strides=(1,))

    def words(self, columns: np.ndarray, k: int) -> np.ndarray:
        return self.view[self.starts[columns] + 8 * k]


def _padded(arr: np.ndarray, end: int) -> np.ndarray:
    """Return ``arr``, or a copy with zero bytes after it when fewer than 24 bytes follow offset ``end``
    (token words are read up to 16 bytes past a token start; zero bytes read as whitespace)."""
    if len(arr) - end >= 24:
        return arr
    return np.concatenate((arr, np.zeros(24, dtype=np.uint8)))


_SCRATCH = threading.local()
_SCRATCH_CACHED = 1 << 24  # work arrays up to this size are kept for the next call


def _scratch(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return two bool work arrays of ``n`` elements for the scans of a loop body, kept per thread between calls
    (fresh pages of a new array cost a page fault each: on a file of 300 kB, more than the scans themselves)."""
    work = getattr(_SCRATCH, "work", None)
    if work is None or work.shape[1] < n:
        work = np.empty((2, 1 << max(n - 1, 1).bit_length()), dtype=bool)
        if work.shape[1] <= _SCRATCH_CACHED:
            _SCRATCH.work = work
    return work[0, :n], work[1, :n]


def _token_starts(flat: np.ndarray, nonspace: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Fill ``nonspace`` and ``starts`` (bool, like ``flat``) with the bytes of ``flat`` above space and those
    that start a token (the byte before ``flat`` is whitespace); return ``starts``."""
    np.greater(flat, 32, out=nonspace)
    starts[0] = nonspace[0]
    np.greater(nonspace[1:], nonspace[:-1], out=starts[1:])
    return starts


def _aligned_table(data: bytes, arr: np.ndarray, body_start: int, ncols: int) -> _Table | None:
    """Return the loop as an `_AlignedTable` if its lines are all as long as the first, hold printable ASCII and
    have tokens starting at the same offsets on every line, else None (then `_general_table` reads it)."""
    eol = data.find(b"\n", body_start, body_start + 65536)
    width = eol + 1 - body_start
    if eol < 0 or width < 2 * ncols:
        return None
    lines = (len(data) - body_start) // width
    rows = arr[body_start : body_start + lines * width].reshape(lines, width)
    good = (rows[:, -1] == 10) & ~_LINE_END_CANDIDATE[rows[:, 0]]
    nrows = lines if good.all() else int(good.argmin())
    end = body_start + nrows * width
    if nrows == 0 or not _loop_ends_at(data, end):
        return None
    flat = arr[body_start:end]
    work, starts = _scratch(len(flat))
    if flat.max() > 126 or np.count_nonzero(np.less(flat, 32, out=work)) != nrows:  # printable, line feeds
        return None
    _token_starts(flat, work, starts)
    lines_starts = starts.reshape(nrows, width)
    offsets = np.flatnonzero(lines_starts[0])
    if len(offsets) != ncols or not np.equal(lines_starts, lines_starts[0], out=work.reshape(nrows, width)).all():
        return None  # every line has its tokens where the first has
    if not _plain_tokens(arr, body_start, flat, work, starts):
        return None
    return _AlignedTable(arr, body_start, width, nrows, offsets)


def _general_table(data: bytes, arr: np.ndarray, body_start: int, ncols: int) -> _Table | None:
    """Return the loop as a `_GeneralTable`: its values are the tokens up to the first line that starts with a
    tag, a comment or a keyword (or EOF), which must hold a whole number of rows; None if not plain."""
    rest = arr[body_start:]
    line_starts = np.concatenate(([0], np.flatnonzero(rest[:-1] == 10) + 1)) + body_start
    candidates = line_starts[_LINE_END_CANDIDATE[arr[line_starts]]]
    first = arr[candidates]
    block, loop, _ = _keywords(arr, candidates + 4)
    terminator = (first == 95) | (first == 35) | block | loop | _keywords(arr, candidates + 6)[0]
    end = int(candidates[terminator.argmax()]) if terminator.any() else len(data)
    if end == body_start or not _loop_ends_at(data, end):
        return None
    flat = arr[body_start:end]
    if flat.max() > 126:
        return None
    work, starts = _scratch(len(flat))
    control = np.count_nonzero(np.less(flat, 32, out=work))
    if control and control != sum(np.count_nonzero(np.equal(flat, c, out=work)) for c in b"\t\n\r"):
        return None  # control bytes other than whitespace
    starts = np.flatnonzero(_token_starts(flat, work, starts)) + body_start
    if len(starts) == 0 or len(starts) % ncols or not _plain_tokens(arr, body_start, flat, *_scratch(len(flat))):
        return None
    return _GeneralTable(_padded(arr, end), starts.reshape(-1, ncols), end)


def _plain_tokens(arr: np.ndarray, body_start: int, flat: np.ndarray, work: np.ndarray, other: np.ndarray) -> bool:
    """Return False if a token of the loop body ``flat`` (at ``body_start`` in ``arr``) starts with a quote,
    ``#``, ``$``, ``;`` or ``_``, or with a keyword. Such bytes are rare in ``_atom_site`` loops: the body is
    screened for them at once (into the bool work arrays) and only their occurrences are looked at (a quote
    inside a token, as in ``O5'``, is part of a plain value, as in gemmi's grammar)."""
    shifted = np.subtract(flat, np.uint8(34), out=work.view(np.uint8))
    special = np.less_equal(shifted, 5, out=work)  # "#$%&'
    special |= np.equal(flat, 59, out=other)  # ;
    special |= np.equal(flat, 95, out=other)  # _
    if not special.any():
        return True
    at = np.flatnonzero(special) + body_start
    if (_NOT_PLAIN_FIRST[arr[at]] & (arr[at - 1] <= 32)).any():
        return False
    block, loop, _ = _keywords(arr, at[arr[at] == 95])
    return not (block.any() or loop.any())


# --- reading the values ------------------------------------------------------------------------------------------


def _lengths(words: np.ndarray) -> np.ndarray:
    """Return the length of the token starting each word: the index of its first byte <= 32, 8 if none (uint8).

    The lowest byte flagged by ``f = (w - 0x21..21) & ~w & 0x80..80`` is the lowest byte below 0x21 (a borrow
    only flags bytes above it); ``bitwise_count((f - 1) & ~f)`` is its bit index (64 when no byte is flagged)."""
    flags = words - _SPACES
    below = np.invert(words)
    flags &= below
    flags &= _HIGH_BITS
    np.invert(flags, out=below)
    flags -= _U64(1)
    flags &= below  # the bits below the lowest flag
    count = np.bitwise_count(flags)
    count >>= np.uint8(3)
    return count


def _short_decimals(words: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (value, plain, integer) of tokens of 1 to 8 bytes given by their first 8 bytes (uint64)
    and lengths (uint8).

    plain where the token is ``[+-]?digits[.digits]`` with a digit (``as_number``'s plain decimals), integer where
    it has no point (``as_int``); value is the float64 of plain tokens, signed (exact for integers). The sign
    is dropped and the rest shifted to the word's top bytes, the point squeezed out, and the digits combined with
    three SWAR multiply-adds: at most 8 digits and 7 fraction digits, so ``mantissa / 10.0**fraction`` is exact
    to the correctly rounded double of fast_float. No division, no per-token branch.
    """
    head = words & _U64(0xFF)
    negative = head == ord("-")
    signed = head == ord("+")
    signed |= negative
    shift = signed.astype(np.uint64)
    shift <<= _U64(3)
    aligned = words >> shift
    shift += (_U64(8) - length) << _U64(3)
    aligned <<= shift  # the sign dropped, the token in the word's top bytes
    chars = aligned.view(np.uint8)
    is_digit = chars - np.uint8(48)
    is_digit = np.less(is_digit, 10, out=is_digit.view(bool))
    is_point = chars == 46
    good = chars == 0  # the zero bytes shifted in before the token
    good |= is_digit
    good |= is_point
    points = is_point.view(np.uint64)
    plain = good.view(np.uint64) == _ONES
    plain &= is_digit.view(np.uint64) != 0
    point = points - _U64(1)
    plain &= (points & point) == 0  # one point at most
    point = np.bitwise_count(point)
    point >>= np.uint8(3)  # the point's byte; 8: none
    digits = aligned & _U64(0x0F0F0F0F0F0F0F0F)
    points *= _U64(0x0E)
    digits -= points  # digit values, the point 0
    below = digits & _BELOW_POINT[point]
    digits ^= below
    below <<= _U64(8)
    digits |= below  # the point squeezed out
    for step, scale, mask in _SWAR_STEPS:  # pairs of digits, of pairs, of fours: the top byte is the units
        np.right_shift(digits, step, out=below)
        digits *= scale
        digits += below
        digits &= mask
    value = digits.astype(np.float64)
    value /= _F10[_FRACTION_DIGITS[point]]
    np.negative(value, out=value, where=negative)  # "-0.0" is -0.0, as in fast_float
    return value, plain, plain & (point == 8)


def _long_decimals(first: np.ndarray, second: np.ndarray, length: np.ndarray):
    """`_short_decimals` for tokens of 9 to 16 bytes (rare: a few tokens of a file, if any), from their first and
    second 8 bytes, with at most 15 digits (integers: 9)."""
    m = len(first)
    chars = np.stack((first, second), axis=1).view(np.uint8).reshape(m, 16)
    inside = np.arange(16) < length[:, None].astype(np.int64)
    negative = chars[:, 0] == ord("-")
    signed = negative | (chars[:, 0] == ord("+"))
    inside[:, 0] &= ~signed
    digit = chars - np.uint8(48)
    is_digit = (digit < 10) & inside
    is_point = (chars == 46) & inside
    ndigits, npoints = is_digit.sum(1), is_point.sum(1)
    plain = ((is_digit | is_point) == inside).all(1) & (ndigits >= 1) & (ndigits <= _MAX_DIGITS) & (npoints <= 1)
    plain &= length <= 15  # 16: 16 bytes or more (the byte after the second word is not read)
    fraction = (is_digit & (np.cumsum(is_point, axis=1) > 0)).sum(1)
    weights = np.where(is_digit, _P10[np.maximum(ndigits[:, None] - np.cumsum(is_digit, axis=1), 0)], 0)
    value = (digit.astype(np.int64) * weights).sum(1) / _F10[fraction]
    np.negative(value, out=value, where=negative)
    return value, plain, plain & (npoints == 0) & (ndigits <= _MAX_INT_DIGITS)


class _Tokens:
    """The tokens of some columns, gathered at once. ``column(c)`` gives, per row, a token's first 8 bytes as
    uint64, its next 8 bytes (None when the column has no token of 8+ bytes), its length (uint8; 17: 16 or more),
    its bytes zero-padded (the first 8), whether it is null (``cif::is_null``), and whether the column holds one
    token on every row (then the arrays hold the first row's only: they broadcast against the others).

    In an aligned table a column whose fields (token and padding, up to the next column) fit in 8 bytes and are
    the same on every row is found constant from the raw words; only the other columns are measured row by row
    (AlphaFold DB: 8 of the 16 columns read are constant).
    """

    def __init__(self, table: _Table, columns: list[int]):
        index = np.array(columns)
        first = table.words(index, 0)
        constant = np.zeros(len(columns), dtype=bool)
        if table.widths is not None:
            widths = table.widths[index]
            fields = first & _LOW_BYTES[np.minimum(widths, 8)][:, None]
            constant = (fields == fields[:, :1]).all(1) & (widths <= 8)
        self._columns: dict[int, tuple] = {}
        for rows, fixed in ((np.flatnonzero(~constant), False), (np.flatnonzero(constant), True)):
            if len(rows) == 0:
                continue
            words = first[rows] if not fixed else first[rows, :1]
            length = _lengths(words)
            second = None
            long = np.flatnonzero((length == 8).any(1))
            if len(long):  # tokens of 8+ bytes (never in a constant column): read their next 8 bytes too
                second = np.zeros_like(words)
                second[long] = table.words(index[rows[long]], 1)
                more = _lengths(second[long])
                more += more == 8  # 17: 16 bytes or more
                length[long] += np.where(length[long] == 8, more, 0)
            text = words & _LOW_BYTES[np.minimum(length, 8)]
            null = text == ord("?")
            null |= text == ord(".")
            same = np.ones(len(rows), dtype=bool) if fixed else (text == text[:, :1]).all(1)
            same[long] = False  # the text holds a long token's first 8 bytes only
            for i, row in enumerate(rows):
                arrays = (words[i], None if second is None else second[i], length[i], text[i], null[i])
                self._columns[columns[row]] = (*arrays, bool(same[i]))

    def __contains__(self, c: int) -> bool:
        return c in self._columns

    def column(self, c: int) -> tuple:
        """Return (first, second or None, length, text, null, constant) of column ``c``."""
        return self._columns[c]


def _row_access(tokens: _Tokens, extra: _Tokens | None, primary: int, fallback: int | None) -> tuple:
    """Return `_Tokens.column` of the tokens gemmi's ``RowAccess`` reads: the primary column's, and the fallback
    column's (in ``tokens`` or ``extra``) where the primary's is null."""
    token = tokens.column(primary)
    if fallback is None or not token[4].any():
        return token
    other = (tokens if fallback in tokens else extra).column(fallback)
    use = token[4]
    seconds = [t if t is not None else np.zeros_like(token[0]) for t in (token[1], other[1])]
    second = np.where(use, seconds[1], seconds[0]) if token[1] is not None or other[1] is not None else None
    first, length, text, null = (np.where(use, other[k], token[k]) for k in (0, 2, 3, 4))
    return first, second, length, text, null, False


def _numbers(n: int, columns: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Return per column (value, plain, integer, null) arrays of numeric columns, parsed in one `_short_decimals`
    call (tokens of 9+ bytes by `_long_decimals`). ``columns`` holds `_Tokens.column` tuples.

    Only the first token of each run of equal tokens in a column is parsed and the value repeated along the
    run: a constant column is parsed once (AlphaFold DB: occupancy, model number, formal charge), a per-residue
    one once per residue (residue numbers, pLDDT); coordinates change on every row.
    """
    parts = []  # per column: (first words, lengths, seconds or None) of the parsed tokens, run of each row
    for first, second, length, text, _, constant in columns:
        if constant:
            parts.append((first[:1], length[:1], None if second is None else second[:1], np.zeros(n, dtype=np.intp)))
            continue
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(text[1:], text[:-1], out=new[1:])
        if second is None and np.count_nonzero(new) < n // 2:
            runs = np.flatnonzero(new)
            parts.append((first[runs], length[runs], None, np.cumsum(new) - 1))
        else:
            parts.append((first, length, second, None))
    first = np.concatenate([p[0] for p in parts])
    length = np.concatenate([p[1] for p in parts])
    value, plain, integer = _short_decimals(first, np.minimum(length, 8))
    long = np.flatnonzero(length > 8)
    if len(long):
        second = np.concatenate([p[2] if p[2] is not None else np.zeros_like(p[0]) for p in parts])
        value[long], plain[long], integer[long] = _long_decimals(first[long], second[long], length[long])
    out, at = [], 0
    for (words, _, _, run), column in zip(parts, columns):
        span = slice(at, at + len(words))
        at += len(words)
        parsed = (value[span], plain[span], integer[span])
        if run is not None:
            parsed = tuple(a[run] for a in parsed)
        out.append((*parsed, column[4]))
    return out


def _records(table: _Table, columns: dict[str, int]) -> AtomRecords | None:
    """Return the `AtomRecords` of the first model from a tokenised loop, or None where gemmi may differ.

    The columns read are gathered at once as 8-byte words; names, checks and numbers are computed on all of them
    together (a fixed number of numpy calls per file).
    """
    col = columns.get
    # gemmi's RowAccess pairs: the auth_ column read first, the label_ column where its value is null
    pairs = []
    for name in ("atom_id", "comp_id", "asym_id", "seq_id"):
        auth, label = col("auth_" + name), col("label_" + name)
        if auth is None and label is None:
            return None  # gemmi fails: "Neither _atom_site.label_... nor auth_... found"
        pairs.append((label, None) if auth is None else (auth, label))
    xyz = [col("cartn_x"), col("cartn_y"), col("cartn_z")]
    occupancy, b_iso, model = col("occupancy"), col("b_iso_or_equiv"), col("pdbx_pdb_model_num")
    checked = [c for c in (col("label_seq_id"), col("pdbx_formal_charge")) if c is not None]  # read by as_int
    ins_code = col("pdbx_pdb_ins_code")
    # FlatStructure's 7-byte subchain and entity names; as_char throws on values of 2+ characters
    limits = {col("label_asym_id"): _MAX_NAME, col("label_entity_id"): _MAX_NAME, col("label_alt_id"): 1}
    limits[ins_code] = 1
    limits.pop(None, None)
    base = {p for p, _ in pairs} | set(xyz) | {occupancy, b_iso, model, *checked, *limits}
    tokens = _Tokens(table, sorted(c for c in base if c is not None))
    fallbacks = [f for p, f in pairs if f is not None and f not in tokens and tokens.column(p)[4].any()]
    extra = _Tokens(table, fallbacks) if fallbacks else None

    names = []  # as_string: a null is empty
    for primary, fallback in pairs[:3]:
        _, _, size, text, empty, _ = _row_access(tokens, extra, primary, fallback)
        if size.max() > _MAX_NAME:
            return None
        name = np.where(empty, _U64(0), text)
        names.append(name if len(name) == table.nrows else np.full(table.nrows, name[0]))  # a constant column
    atom, resname, chain = names
    if any(tokens.column(c)[2].max() > limit for c, limit in limits.items()):
        return None
    if ((resname & _U64(0xFF)) == ord("~")).any():  # a shortened CCD code: gemmi renames it
        return None
    icode = np.full(table.nrows, 32, dtype=np.uint8)
    if ins_code is not None:  # as_char(value, ' ')
        _, _, _, text, empty, _ = tokens.column(ins_code)
        icode = np.broadcast_to(np.where(empty, _U64(32), text).astype(np.uint8), (table.nrows,)).copy()
        present = np.bincount(icode, minlength=256) > 0
        if (present & present[np.arange(256) ^ 32]).any():  # codes equal up to case: gemmi joins the residues
            return None

    # numbers: coordinates plain decimals, occupancy and B plain or null, residue numbers integers; label_seq_id
    # and pdbx_formal_charge integers or null (as_int throws otherwise); model numbers integers or null (as 0)
    seq = _row_access(tokens, extra, *pairs[3])
    label_seq = col("label_seq_id")
    if label_seq in checked and np.array_equal(tokens.column(label_seq)[3], seq[3]):
        checked.remove(label_seq)  # the same tokens as the residue numbers (AlphaFold DB): checked with them
    numeric = [c for c in (*xyz, occupancy, b_iso, model, *checked) if c is not None]
    parsed = _numbers(table.nrows, [tokens.column(c) for c in numeric] + [seq])
    resnum_value, _, resnum_integer, _ = parsed.pop()
    number = dict(zip(numeric, parsed))
    if not (all(number[c][1].all() for c in xyz) and resnum_integer.all()):
        return None
    for c in (occupancy, b_iso):
        if c is not None and not (number[c][1] | number[c][3]).all():
            return None
    for c in [*checked, model]:
        if c is not None and not (number[c][2] | number[c][3]).all():
            return None
    n = table.nrows
    pos = np.stack([number[c][0] for c in xyz], axis=1)
    occ = np.ones(n, dtype=np.float32)  # the Atom defaults where the column is absent or the value null
    b = np.full(n, 20.0, dtype=np.float32)
    for c, out, default in ((occupancy, occ, 1.0), (b_iso, b, 20.0)):
        if c is not None:  # (float) as_number(value)
            value, _, _, null = number[c]
            out[:] = np.where(null, default, value) if null.any() else value  # (broadcast if constant)
    resnum = resnum_value.astype(np.int32)
    if model is not None and not tokens.column(model)[5]:  # several model numbers: keep the first row's
        value, _, _, null = number[model]
        models = np.where(null, 0, value)  # as_int(num, 0)
        keep = models == models[0]
        chain, resnum, icode, resname, atom = chain[keep], resnum[keep], icode[keep], resname[keep], atom[keep]
        occ, pos, b = occ[keep], pos[keep], b[keep]
    return AtomRecords(chain=chain, resnum=resnum, icode=icode, resname=resname, name=atom, occ=occ, pos=pos, b=b)
