"""The Huffman-only PNG encoder (issue 24): every row "Up"-filtered in NumPy, the residuals coded byte by byte
(no matches) in dynamic-Huffman deflate blocks of a few megabytes, one code a block, by two loops numba
compiles (their machine code cached and loaded with the render's kernel: :mod:`gradcam.inputs.resample_fast`,
called through ctypes without the GIL). Measured on 12 MP overlays (benchmarks/decode_png.py, interleaved): 0.56-0.93x
the CPU of ISA-L's level 1 on the same residuals, 0.77-0.84x fpng's; files 1.5-7 % smaller than ISA-L's (0.1 %
larger on one photo), 10-23 % smaller than fpng's. At 640x480 1.9-2.5x fpng's CPU (Python's share of each
block)."""
from __future__ import annotations

import heapq
import struct
import zlib

import numpy as np

from ..inputs.resample_fast import ALSO_LOADED, LazyKernel

#: the PNG file signature
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(checks, kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, the CRC (``checks.crc32``: isal's or zlib's) of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checks.crc32(data, checks.crc32(kind)))


#: order in which a dynamic deflate block lists the code lengths of its code-length alphabet (RFC 1951 3.2.7)
_CODE_LENGTH_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)


def _histogram(flat_p, size, counts_p, partial_p):  # pragma: no cover - compiled by numba
    """counts[b] += the occurrences of each byte b among ``size`` bytes; ``partial``: int64 (4, 256) scratch, four
    tables so that no store waits on the one before it."""
    for value in range(1024):
        partial_p[value] = 0
    end = size - size % 4
    for at in range(0, end, 4):
        partial_p[flat_p[at]] += 1
        partial_p[256 + flat_p[at + 1]] += 1
        partial_p[512 + flat_p[at + 2]] += 1
        partial_p[768 + flat_p[at + 3]] += 1
    for at in range(end, size):
        partial_p[flat_p[at]] += 1
    for value in range(256):
        counts_p[value] += partial_p[value] + partial_p[256 + value] + partial_p[512 + value] + partial_p[768 + value]


def _pack(flat_p, size, table_p, out_p, state_p):  # pragma: no cover - compiled by numba
    """Each byte's code (``table``: code | length << 24, LSB first) appended to the 32-bit words ``out`` from word
    state[0] on, after the state[2] pending bits state[1]; the state updated."""
    low, word, shift, half = np.uint64(0xFFFFFF), np.uint64(0xFFFFFFFF), np.uint64(24), np.uint64(32)
    at, bits, count = np.int64(state_p[0]), state_p[1], state_p[2]
    pairs = size // 2
    for pair in range(pairs + size % 2):  # two codes of at most 15 bits each fit beside < 32 pending bits
        first = table_p[flat_p[2 * pair]]
        second = table_p[flat_p[2 * pair + 1]] if pair < pairs else np.uint64(0)
        length = first >> shift
        bits |= ((first & low) | (second & low) << length) << count
        count += length + (second >> shift)
        if count >= half:
            out_p[at] = np.uint32(bits & word)
            at += 1
            bits >>= half
            count -= half
    state_p[0], state_p[1], state_p[2] = np.uint64(at), bits, count


def _histogram_caller(function):
    """``histogram(flat, counts)`` over the C function: uint8 (n,) bytes, int64 (256,) counts, added to."""

    def histogram(flat: np.ndarray, counts: np.ndarray) -> None:
        if not (flat.dtype == np.uint8 and flat.ndim == 1 and flat.flags.c_contiguous and counts.dtype == np.int64
                and counts.shape == (256,) and counts.flags.c_contiguous and counts.flags.writeable):
            raise ValueError("the histogram takes uint8 (n,) bytes and int64 (256,) counts")
        partial = np.empty(1024, np.int64)  # held here: its memory must outlive the call
        function(flat.ctypes.data, flat.size, counts.ctypes.data, partial.ctypes.data)

    return histogram


def _pack_caller(function):
    """``pack(flat, table, out, at, bits, count) -> (at, bits, count)`` over the C function: uint8 (n,) bytes,
    uint64 (256,) codes of at most 15 bits, uint32 words with room for 15 bits a byte from word ``at`` on."""

    def pack(flat: np.ndarray, table: np.ndarray, out: np.ndarray, at: int, bits: int, count: int) -> tuple:
        if not (flat.dtype == np.uint8 and flat.ndim == 1 and flat.flags.c_contiguous and table.dtype == np.uint64
                and table.shape == (256,) and table.flags.c_contiguous and int((table >> np.uint64(24)).max()) <= 15
                and out.dtype == np.uint32 and out.ndim == 1 and out.flags.c_contiguous and out.flags.writeable
                and 0 <= int(at) and 0 <= int(count) < 32 and int(at) + (int(count) + 15 * flat.size) // 32 + 1
                <= out.size):
            raise ValueError("the packer's arrays do not agree (codes of at most 15 bits, room for them)")
        state = np.array([at, bits, count], np.uint64)
        function(flat.ctypes.data, flat.size, table.ctypes.data, out.ctypes.data, state.ctypes.data)
        return int(state[0]), int(state[1]), int(state[2])

    return pack


HISTOGRAM = LazyKernel(_histogram, ("u8*", "i64", "i64*", "i64*"), caller=_histogram_caller)
PACK = LazyKernel(_pack, ("u8*", "i64", "u64*", "u32*", "u64*"), caller=_pack_caller)
ALSO_LOADED.extend([HISTOGRAM, PACK])  # loaded by the render kernel's loader, after it


def kernels() -> tuple | None:
    """(histogram, pack), the compiled loops, where they are loaded (with the render's kernel: a run of many
    pixels; their machine code cached as the render's is); None otherwise. Never starts a load."""
    if HISTOGRAM.compiled is None or PACK.compiled is None:
        return None
    return HISTOGRAM.compiled, PACK.compiled


def code_lengths(counts, limit: int) -> np.ndarray:
    """Huffman code lengths (int64, one a symbol, 0 for an unused one) of no more than ``limit`` bits for
    these symbol counts, at least two symbols coded (a lone symbol gets a partner of count 1, the lowest
    unused one), so the code is complete. Counts below 1/2^(limit - 1) of the total are raised to it first, and
    halved (with all others) while a code is still too long."""
    counts = np.asarray(counts, np.int64).copy()
    if np.count_nonzero(counts) < 2:
        counts[np.flatnonzero(counts == 0)[: 2 - np.count_nonzero(counts)]] = 1
    used = np.flatnonzero(counts)
    counts[used] = np.maximum(counts[used], counts.sum() >> (limit - 1))
    while True:
        heap = [(int(counts[symbol]), node) for node, symbol in enumerate(used)]
        heapq.heapify(heap)
        parent = list(range(2 * len(used) - 1))
        for node in range(len(used), 2 * len(used) - 1):  # each new node joins the two lightest
            (first, a), (second, b) = heapq.heappop(heap), heapq.heappop(heap)
            parent[a] = parent[b] = node
            heapq.heappush(heap, (first + second, node))
        depth = [0] * len(parent)
        for node in range(len(parent) - 2, -1, -1):  # parents come after their children; the root is last
            depth[node] = depth[parent[node]] + 1
        lengths = np.zeros(len(counts), np.int64)
        lengths[used] = depth[: len(used)]
        if lengths.max() <= limit:
            return lengths
        counts[used] = (counts[used] + 1) // 2


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """RFC 1951's canonical codes of these lengths, bit-reversed (deflate sends Huffman codes MSB first into
    an LSB-first stream), as uint64 ``code | length << 24``."""
    table = np.zeros(len(lengths), np.uint64)
    code = 0
    for length in range(1, int(lengths.max()) + 1):
        for symbol in np.flatnonzero(lengths == length):
            table[symbol] = int(f"{code:0{length}b}"[::-1], 2) | length << 24
            code += 1
        code <<= 1
    return table


class _Bits:
    """The file being written, its deflate stream as 32-bit words from byte ``START`` on (the pending bits are
    shared with the compiled :func:`_pack`), the bytes before it left for the signature and chunk headers."""

    START = 44  # 43 bytes precede the stream (signature, IHDR, IDAT's length and type, zlib's header) + 1 unused

    def __init__(self, words: int):
        self.words, self.at, self.bits, self.count = np.empty(words, np.uint32), 0, 0, 0
        self.file = self.words.view(np.uint8)

    def put(self, value: int, length: int) -> None:
        self.bits |= value << self.count
        self.count += length
        while self.count >= 32:
            self.words[self.at] = self.bits & 0xFFFFFFFF
            self.at, self.bits, self.count = self.at + 1, self.bits >> 32, self.count - 32

    def end(self) -> int:
        """Writes the last bits, padded with zeros to a byte; the offset of the byte after them."""
        tail = self.bits.to_bytes((self.count + 7) // 8, "little")
        end = 4 * self.at + len(tail)
        self.file[4 * self.at : end] = np.frombuffer(tail, np.uint8)
        return end


def _block_header(bits: _Bits, literal_lengths: np.ndarray, final: bool) -> None:
    """A dynamic-Huffman block's header: 257 literal/length codes, two 1-bit distance codes (never used: the
    pkzip convention zlib follows), every code length sent as such (no repeat codes)."""
    lengths = np.concatenate([literal_lengths, [1, 1]])
    length_codes = code_lengths(np.bincount(lengths, minlength=19), 7)
    bits.put(int(final), 1)
    bits.put(2, 2)  # BTYPE 10: dynamic Huffman
    bits.put(0, 5)  # HLIT: 257 literal/length codes
    bits.put(1, 5)  # HDIST: 2 distance codes
    bits.put(15, 4)  # HCLEN: all 19 code-length code lengths
    for symbol in _CODE_LENGTH_ORDER:
        bits.put(int(length_codes[symbol]), 3)
    table = canonical_codes(length_codes)
    for length in lengths:
        entry = int(table[length])
        bits.put(entry & 0xFFFFFF, entry >> 24)


def up_filtered_blocks(image: np.ndarray, block_bytes: int):
    """The PNG rows of a uint8 (H, W, 3) image, each "Up"-filtered (filter byte 2, then each byte minus the byte
    above it, modulo 256; zeros above the first row), about ``block_bytes`` at a time: yields (uint8 (rows,
    3 W + 1) filtered rows, whether they are the last), in one buffer reused from block to block (the filtered
    copy of a 12-megapixel photo is never whole in memory). ``image`` is only read."""
    height, width, _ = image.shape
    rows = np.ascontiguousarray(image).reshape(height, 3 * width)
    step = max(1, block_bytes // (3 * width + 1))
    filtered = np.empty((min(step, height), 3 * width + 1), np.uint8)
    filtered[:, 0] = 2  # PNG filter type 2, "Up"
    for start in range(0, height, step):
        block = rows[start : start + step]
        out = filtered[: len(block)]
        if start == 0:  # the row above the first is zeros
            out[0, 1:] = block[0]
            np.subtract(block[1:], block[:-1], out=out[1:, 1:])
        else:
            np.subtract(block, rows[start - 1 : start - 1 + len(block)], out=out[:, 1:])
        yield out, start + step >= height


def encode_huffman(image: np.ndarray, block_bytes: int, checks=zlib) -> bytes | None:
    """A uint8 (H, W, 3) image as an 8-bit RGB PNG: every row "Up"-filtered, then deflated as Huffman-only
    dynamic blocks (no matches) coded by compiled loops without the GIL; None while they are not loaded
    (:func:`kernels`). Rows of about ``block_bytes`` a block; CRC and Adler-32
    by ``checks`` (``isal.isal_zlib`` or ``zlib``). ``image`` is only read."""
    compiled = kernels()
    if compiled is None:
        return None
    histogram, pack = compiled
    height, width, _ = image.shape
    blocks = -(-height // max(1, block_bytes // (3 * width + 1)))
    bits = _Bits(height * (3 * width + 1) * 15 // 32 + 200 * blocks + 16)  # 15 bits a byte at most, headers
    bits.at = _Bits.START // 4
    adler = 1
    for out, last in up_filtered_blocks(image, block_bytes):
        flat = out.reshape(-1)
        adler = checks.adler32(flat, adler)
        counts = np.zeros(257, np.int64)
        histogram(flat, counts[:256])
        counts[256] = 1  # the end-of-block code
        lengths = code_lengths(counts, 15)
        table = canonical_codes(lengths)
        _block_header(bits, lengths, last)
        bits.at, bits.bits, bits.count = pack(flat, table[:256], bits.words, bits.at, bits.bits, bits.count)
        end = int(table[256])
        bits.put(end & 0xFFFFFF, end >> 24)
    end = bits.end()
    file = bits.file
    file[end : end + 4] = np.frombuffer(struct.pack(">I", adler), np.uint8)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    size = end + 4 - (_Bits.START - 2)  # zlib's header, the deflate stream, its Adler-32
    head = SIGNATURE + chunk(checks, b"IHDR", header) + struct.pack(">I", size) + b"IDAT" + b"\x78\x01"
    file[_Bits.START - len(head) : _Bits.START] = np.frombuffer(head, np.uint8)
    crc = checks.crc32(file[_Bits.START - 6 : end + 4], 0)  # the chunk's type and data
    file[end + 4 : end + 8] = np.frombuffer(struct.pack(">I", crc), np.uint8)
    iend = chunk(checks, b"IEND", b"")
    file[end + 8 : end + 8 + len(iend)] = np.frombuffer(iend, np.uint8)
    return file[_Bits.START - len(head) : end + 8 + len(iend)].tobytes()
