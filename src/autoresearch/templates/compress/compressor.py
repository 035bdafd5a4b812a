"""The editable file of the `compress` task: a lossless compressor for Python source text.

harness.py calls compress(data) once per corpus file, and decompress(blob) on each blob in a
fresh process that sees nothing but the blob; the round trip must be exact. The score is
bits per byte of the blobs plus the xz size of this file without its comments, so comments
are free and embedded data is not.

The baseline is raw DEFLATE (zlib without its header and checksum, which the round trip does
not need). Its knobs are below; everything else is yours to replace.
"""

import zlib

# Effort of the match search: 1 is fastest, 9 looks hardest for long matches.
LEVEL = 6  # search: int(1, 9)
# log2 of the sliding window. Source files repeat names from far back, so bigger tends to win.
WINDOW_BITS = 15  # search: int(9, 15)
# Memory for the internal match state: more memory, fewer hash collisions.
MEM_LEVEL = 8  # search: int(1, 9)
# How DEFLATE mixes matches and literals; "default" suits text, the others exist for other data.
STRATEGY = "default"  # search: ["default", "filtered", "huffman_only", "rle", "fixed"]

STRATEGIES = {
    "default": zlib.Z_DEFAULT_STRATEGY,
    "filtered": zlib.Z_FILTERED,
    "huffman_only": zlib.Z_HUFFMAN_ONLY,
    "rle": zlib.Z_RLE,
    "fixed": zlib.Z_FIXED,
}


def compress(data: bytes) -> bytes:
    # A negative window size asks for a raw stream: no 2-byte header, no 4-byte checksum.
    packer = zlib.compressobj(LEVEL, zlib.DEFLATED, -WINDOW_BITS, MEM_LEVEL, STRATEGIES[STRATEGY])
    return packer.compress(data) + packer.flush()


def decompress(blob: bytes) -> bytes:
    return zlib.decompress(blob, -WINDOW_BITS)
