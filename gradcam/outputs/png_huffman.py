"""The Huffman-only PNG encoder (issue 24): every row "Up"-filtered, the residuals coded byte by byte (no
matches) in dynamic-Huffman deflate blocks of a few megabytes, one code a block. One compiled kernel does a
block's work (the filter, the byte counts, the code, the header, the bits: numba's machine code, cached and
loaded with the render's kernel by :mod:`gradcam.inputs.resample_fast`, called through ctypes without the GIL).
Overlays of the sample photos (benchmarks/png_small.py, CPU): 0.55-0.65x fpng's at 640x480 and 1280x960,
files 3-11 % smaller; about fpng's at 360x270, 7x its 0.02 ms at 64x64 (the code's fixed cost, ~0.13 ms)."""
from __future__ import annotations

import struct
import threading
import zlib

import numpy as np

from ..inputs.resample_fast import ALSO_LOADED, LazyKernel

#: the PNG file signature
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(checks, kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, type, data, the CRC (``checks.crc32``: isal's or zlib's) of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checks.crc32(data, checks.crc32(kind)))


#: order in which a dynamic deflate block lists the code lengths of its code-length alphabet (RFC 1951 3.2.7),
#: for the kernel 5 bits each in two integers (a tuple indexed at run time would bring an exception path)
_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)
_ORDER_LOW, _ORDER_HIGH = (sum(symbol << 5 * j for j, symbol in enumerate(part)) for part in (_ORDER[:12], _ORDER[12:]))
#: the code is chosen from the counts of one group of 4 bytes in SAMPLE, the bytes never seen there counted
#: 1/2^15 of the total (each has a code): ~0.3 ms less at 640x480; files 0.05-0.12 % larger there than
#: with every byte counted, 0.4-0.6 % on very smooth 12 MP overlays (photos upscaled 6-13x)
SAMPLE = 4
#: int64 scratch of the kernel: 4 partial counts of 256, then 288 slots a code (0: literal/length, 1: code
#: length) for its counts, lengths and codes, then the Huffman trees' work, the header's (value, bits) items
_COUNTS, _LENGTHS, _CODES, _KEYS, _NODES, _PARENTS, _DEPTHS, _ITEMS, _TALLY = (
    1024, 1600, 2176, 2752, 3040, 3328, 3904, 4192, 4768)
#: scratch bytes: the int64 words, then the codes of byte pairs (uint32 65536), their lengths (uint8 65536);
#: each thread's own, reused (the count tables only grow: no 8 kB memset a block)
_WORK_BYTES, _LOCAL = 8 * 4800, threading.local()
SCRATCH = _WORK_BYTES + 5 * 65536
#: bytes before the deflate stream in the output: 43 (signature, IHDR, IDAT's length and type, zlib's header)
#: + 5 unused, so that the stream's 64-bit words start aligned
_HEAD = 48


def _block(image_p, height, row, start, stop, work_p, pairs_p, pair_bits_p, filtered_p, capacity, out_p, words,
           state_p):  # pragma: no cover - compiled by numba
    """Rows [start, stop) of the uint8 (height, row) image "Up"-filtered into ``filtered`` (capacity bytes) and
    coded as one dynamic-Huffman block appended to the uint64 words ``out`` (``words`` of them) from word
    state[0] on, after the state[2] pending bits state[1]; state[3]: BFINAL, state[4]: the longest code
    allowed, state[5]: set to 0 when done, 1 when refused (no room, a bad size, bad counts; out left as it was).
    Without rows, the literal counts are the caller's (work[_COUNTS:][:257]): their code and an empty block."""
    one, k63, k64 = np.uint64(1), np.uint64(63), np.uint64(64)
    at, acc, count, limit = np.int64(state_p[0]), state_p[1], state_p[2], np.int64(state_p[4])
    state_p[5] = 1
    if not (1 <= row < 1 << 31 and 0 <= start <= stop <= height and stop - start < 1 << 31 and 1 <= limit <= 15
            and 0 <= at <= words < 1 << 50 and count < k64 and 0 <= capacity < 1 << 50):
        return  # (the products below cannot overflow)
    size = (stop - start) * (row + 1)
    if size > capacity or at + ((np.int64(count) + 2000 + 15 * size) >> 6) + 2 > words:
        return  # 2000 bits hold the header and the end code: 17 + 19 * 3 + 259 * 7 + 15
    if stop > start:
        at_byte = 0
        for r in range(start, stop):
            filtered_p[at_byte] = 2  # the filter type, "Up"
            base = r * row
            if r == 0:  # the row above the first is zeros
                for i in range(row):
                    filtered_p[at_byte + 1 + i] = image_p[base + i]
            else:
                for i in range(row):
                    filtered_p[at_byte + 1 + i] = image_p[base + i] - image_p[base - row + i]
            at_byte += row + 1
        for v in range(256):  # the four tables' counts so far, taken off
            work_p[_COUNTS + v] = -(work_p[v] + work_p[256 + v] + work_p[512 + v] + work_p[768 + v])
        end = size - size % (4 * SAMPLE)
        for i in range(0, end, 4 * SAMPLE):  # four tables: no count waits on the one before it
            work_p[filtered_p[i]] += 1
            work_p[256 + filtered_p[i + 1]] += 1
            work_p[512 + filtered_p[i + 2]] += 1
            work_p[768 + filtered_p[i + 3]] += 1
        for i in range(end, size):
            work_p[filtered_p[i]] += 1
        for v in range(256):
            work_p[_COUNTS + v] += work_p[v] + work_p[256 + v] + work_p[512 + v] + work_p[768 + v]
        work_p[_COUNTS + 256] = 1  # the end-of-block code
    for tree in range(2):  # the literal/length code, then the code-length code of the 259 lengths sent
        n, most, base = (257, limit, 0) if tree == 0 else (19, 7, 288)
        if tree == 1:
            work_p[_LENGTHS + 257] = work_p[_LENGTHS + 258] = 1  # two 1-bit distance codes, never used
            for s in range(19):
                work_p[_COUNTS + 288 + s] = 0
            for s in range(259):
                work_p[_COUNTS + 288 + work_p[_LENGTHS + s]] += 1
        used, counted = 0, 0
        for s in range(n):
            c = work_p[_COUNTS + base + s]
            if c < 0 or c > 1 << 40:
                return
            used += c > 0
            counted += c
        for s in range(n):  # at least two codes: a lone symbol gets a partner (a complete code)
            if used < 2 and work_p[_COUNTS + base + s] == 0:
                work_p[_COUNTS + base + s] = 1
                used, counted = used + 1, counted + 1
        least, longest = counted >> (most - 1), most + 1  # rarer symbols raised to 1/2^(most - 1) of the total, ...
        for s in range(n):  # bytes the sample missed still have codes, of about 15 bits
            if 0 < work_p[_COUNTS + base + s] < least:
                work_p[_COUNTS + base + s] = least
            elif work_p[_COUNTS + base + s] == 0 and tree == 0 and s < 256 and stop > start:
                work_p[_COUNTS + base + s], used = (counted >> 15) + 1, used + 1
        for attempt in range(64):  # ... and all halved while a code is still too long
            k = 0
            for s in range(n):
                work_p[_LENGTHS + base + s] = 0
                if work_p[_COUNTS + base + s] > 0:
                    work_p[_KEYS + k] = work_p[_COUNTS + base + s] * 512 + s
                    k += 1
            gap = 1
            while gap < used // 3:
                gap = 3 * gap + 1
            while gap >= 1:  # Shell sort (Knuth's gaps: 1, 4, 13, 40, 121) by count, then symbol
                for i in range(gap, used):
                    key, j = work_p[_KEYS + i], i
                    while j >= gap and work_p[_KEYS + j - gap] > key:
                        work_p[_KEYS + j] = work_p[_KEYS + j - gap]
                        j -= gap
                    work_p[_KEYS + j] = key
                gap //= 3
            leaf, node = 0, 0  # two queues: the sorted leaves, the new nodes (made in order of weight)
            for k in range(used - 1):
                weight = 0
                for pick in range(2):  # node < k whenever leaf == used: two of used - k are left
                    if leaf < used and (node >= k or (work_p[_KEYS + leaf] >> 9) <= work_p[_NODES + node]):
                        weight += work_p[_KEYS + leaf] >> 9
                        work_p[_PARENTS + leaf], leaf = k, leaf + 1
                    else:
                        weight += work_p[_NODES + node]
                        work_p[_PARENTS + 288 + node], node = k, node + 1
                work_p[_NODES + k] = weight
            work_p[_DEPTHS + used - 2] = 0  # the root; parents come after their children
            for k in range(used - 3, -1, -1):
                work_p[_DEPTHS + k] = work_p[_DEPTHS + work_p[_PARENTS + 288 + k]] + 1
            longest = 0
            for i in range(used):
                depth = work_p[_DEPTHS + work_p[_PARENTS + i]] + 1
                work_p[_LENGTHS + base + (work_p[_KEYS + i] & 511)] = depth
                longest = longest if longest > depth else depth  # (max() would bring an exception path)
            if longest <= most:
                break
            for s in range(n):
                work_p[_COUNTS + base + s] = (work_p[_COUNTS + base + s] + 1) >> 1
        if longest > most:
            return
        for slot in range(32):  # canonical codes (RFC 1951 3.2.2), bit-reversed: deflate sends them MSB first
            work_p[_TALLY + slot] = 0
        for s in range(n):
            work_p[_TALLY + work_p[_LENGTHS + base + s]] += 1
        first_code, work_p[_TALLY] = 0, 0
        for length in range(1, 16):  # the first code of each length
            first_code = (first_code + work_p[_TALLY + length - 1]) << 1
            work_p[_TALLY + 16 + length] = first_code
        for s in range(n):
            length = work_p[_LENGTHS + base + s]
            taken = work_p[_TALLY + 16 + length]
            work_p[_TALLY + 16 + length] = taken + 1
            flipped = 0
            for b in range(length):
                flipped = flipped << 1 | (taken >> b) & 1
            work_p[_CODES + base + s] = flipped
    # the header's items: BFINAL, BTYPE 10, HLIT 0 (257 codes), HDIST 1 (2), HCLEN 15 (19) in 17 bits; the
    # code-length code's lengths; the 259 lengths in it; last the end-of-block code, after the data
    work_p[_ITEMS], work_p[_ITEMS + 1] = np.int64(state_p[3] != 0) | 2 << 1 | 1 << 8 | 15 << 13, 17
    for j in range(19):
        symbol = (_ORDER_LOW >> 5 * j if j < 12 else _ORDER_HIGH >> 5 * (j - 12)) & 31
        work_p[_ITEMS + 2 + 2 * j], work_p[_ITEMS + 3 + 2 * j] = work_p[_LENGTHS + 288 + symbol], 3
    for s in range(259):
        length = work_p[_LENGTHS + s]
        work_p[_ITEMS + 40 + 2 * s] = work_p[_CODES + 288 + length]
        work_p[_ITEMS + 41 + 2 * s] = work_p[_LENGTHS + 288 + length]
    tail = size % 4  # after the data's pairs of pairs: the 0-3 bytes left, the end-of-block code
    for t in range(tail + 1):
        s = np.int64(filtered_p[size - tail + t]) if t < tail else 256
        work_p[_ITEMS + 558 + 2 * t], work_p[_ITEMS + 559 + 2 * t] = work_p[_CODES + s], work_p[_LENGTHS + s]
    for b in range(256):  # the codes of byte pairs (the first byte's in the low bits), at most 30 bits
        high, high_bits = np.uint64(work_p[_CODES + b]), np.uint64(work_p[_LENGTHS + b])
        for a in range(256):
            bits = np.uint64(work_p[_LENGTHS + a])
            pairs_p[a | b << 8] = np.uint32(np.uint64(work_p[_CODES + a]) | high << bits)
            pair_bits_p[a | b << 8] = np.uint8(bits + high_bits)
    for item in range(280 + tail):  # each put: the bits below `count` kept, a full word stored, no branch
        if item == 279:  # the data, two pairs (at most 60 bits) at a time
            for i in range(0, size - tail, 4):
                first = np.int64(filtered_p[i]) | np.int64(filtered_p[i + 1]) << 8
                second = np.int64(filtered_p[i + 2]) | np.int64(filtered_p[i + 3]) << 8
                bits = np.uint64(pair_bits_p[first])
                code = np.uint64(pairs_p[first]) | np.uint64(pairs_p[second]) << bits
                acc |= code << count
                total = count + bits + np.uint64(pair_bits_p[second])
                out_p[at] = acc
                spill = total >= k64
                acc = ((code >> one) >> (k63 - count)) if spill else acc
                at, count = at + np.int64(spill), total & k63
        code, bits = np.uint64(work_p[_ITEMS + 2 * item]), np.uint64(work_p[_ITEMS + 2 * item + 1])
        acc |= code << count
        total = count + bits
        out_p[at] = acc
        spill = total >= k64
        acc = ((code >> one) >> (k63 - count)) if spill else acc
        at, count = at + np.int64(spill), total & k63
    out_p[at] = acc
    state_p[0], state_p[1], state_p[2], state_p[5] = np.uint64(at), acc, count, 0


def _block_caller(function):
    """``code(image, start, stop, filtered, out, state, scratch)`` over the C function: a C-contiguous uint8 (H, W, 3)
    image, writeable 1-D uint8 rows, uint64 words and (6,) state, uint8 (SCRATCH,); ValueError else or if refused."""

    def code(image, start: int, stop: int, filtered, out, state, scratch) -> None:
        arrays = ((filtered, np.uint8), (out, np.uint64), (state, np.uint64), (scratch, np.uint8))
        if not (all(a.dtype == kind and a.ndim == 1 and a.flags.c_contiguous and a.flags.writeable
                    for a, kind in arrays)
                and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.flags.c_contiguous
                and state.size == 6 and scratch.size >= SCRATCH):
            raise ValueError("the block coder takes a C-contiguous uint8 (H, W, 3) image, writeable 1-D arrays")
        address = scratch.ctypes.data
        function(image.ctypes.data, image.shape[0], 3 * image.shape[1], start, stop, address, address + _WORK_BYTES,
                 address + _WORK_BYTES + 4 * 65536, filtered.ctypes.data, filtered.size, out.ctypes.data, out.size,
                 state.ctypes.data)
        if state[5]:
            raise ValueError("the block coder refused its arguments (sizes, room or counts)")

    return code


BLOCK = LazyKernel(_block, ("u8*", "i64", "i64", "i64", "i64", "i64*", "u32*", "u8*", "u8*", "i64", "u64*", "i64",
                            "u64*"), caller=_block_caller)
ALSO_LOADED.append(BLOCK)  # loaded by the render kernel's loader, after it


def kernels():
    """The compiled block coder (:func:`_block_caller`'s ``code``) where it is loaded (with the render's kernel:
    a run of many pixels; its machine code cached as the render's is); None otherwise. Never starts a load."""
    return BLOCK.compiled


def huffman_code(counts, limit: int = 15) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, codes) of the compiled kernel's Huffman code for up to 257 symbol counts (int64 (n,) each):
    lengths of at most ``limit`` bits (0: unused symbol; a lone symbol gets a partner, the lowest unused one, so
    the code is complete; counts below 1/2^(limit - 1) of the total raised to it, all halved while a code is too
    long), canonical codes bit-reversed. ValueError where not loaded or refused (counts outside [0, 2^40])."""
    compiled = kernels()
    counts = np.asarray(counts, np.int64)
    if compiled is None or counts.ndim != 1 or counts.size > 257:
        raise ValueError("the compiled coder is not loaded, or more than 257 counts")
    scratch, state = np.zeros(SCRATCH, np.uint8), np.array([0, 0, 0, 0, limit, 1], np.uint64)
    work = scratch[:_WORK_BYTES].view(np.int64)
    work[_COUNTS : _COUNTS + counts.size] = counts
    compiled(np.zeros((1, 1, 3), np.uint8), 0, 0, np.zeros(1, np.uint8), np.zeros(64, np.uint64), state, scratch)
    return work[_LENGTHS : _LENGTHS + counts.size].copy(), work[_CODES : _CODES + counts.size].copy()


def encode_huffman(image: np.ndarray, block_bytes: int, checks=zlib) -> bytes | None:
    """A uint8 (H, W, 3) image as an 8-bit RGB PNG: every row "Up"-filtered, then deflated as Huffman-only
    dynamic blocks (no matches) by the compiled kernel without the GIL; None while it is not loaded
    (:func:`kernels`). Rows of about ``block_bytes`` a block; CRC and Adler-32 by ``checks`` (``isal.isal_zlib``
    or ``zlib``). ``image`` is only read (a view is copied first)."""
    code = kernels()
    if code is None:
        return None
    image = np.ascontiguousarray(image)
    height, width, _ = image.shape
    step = max(1, block_bytes // (3 * width + 1))
    blocks = -(-height // step)
    filtered = np.empty(min(step, height) * (3 * width + 1), np.uint8)
    out = np.empty(_HEAD // 8 + (height * (3 * width + 1) * 15 + 2000 * blocks) // 64 + 2 * blocks + 4, np.uint64)
    state, scratch = np.array([_HEAD // 8, 0, 0, 0, 15, 1], np.uint64), getattr(_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _LOCAL.scratch = np.zeros(SCRATCH, np.uint8)
    adler = 1
    for start in range(0, height, step):
        stop = min(height, start + step)
        state[3] = stop == height
        code(image, start, stop, filtered, out, state, scratch)
        adler = checks.adler32(filtered[: (stop - start) * (3 * width + 1)], adler)
    file = out.view(np.uint8)
    end = 8 * int(state[0]) + (int(state[2]) + 7) // 8
    file[end : end + 4] = np.frombuffer(struct.pack(">I", adler), np.uint8)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, filtered, no interlace
    size = end + 4 - (_HEAD - 2)  # zlib's header, the deflate stream, its Adler-32
    head = SIGNATURE + chunk(checks, b"IHDR", header) + struct.pack(">I", size) + b"IDAT" + b"\x78\x01"
    file[_HEAD - len(head) : _HEAD] = np.frombuffer(head, np.uint8)
    crc = checks.crc32(file[_HEAD - 6 : end + 4], 0)  # the chunk's type and data
    iend = chunk(checks, b"IEND", b"")
    file[end + 4 : end + 8 + len(iend)] = np.frombuffer(struct.pack(">I", crc) + iend, np.uint8)
    return file[_HEAD - len(head) : end + 8 + len(iend)].tobytes()
