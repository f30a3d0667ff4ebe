"""The clear fragment header of wire format v1: every field, bit by bit, packed and parsed here.

    off  size  field
    0    1     version, 0x01
    1    1     flags
                 b7..b5  tag code: 0 unsealed, else AEAD tag of (0,4,6,8,10,12,14,16)[code] bytes
                 b4      info: the frame-info block follows (set exactly on the fragment with start 0)
                 b3..b2  mask mode: 0 raw bits, 1 exp-Golomb runs, 2 all kept, 3 none kept
                 b1      index mode: 0 raw ceil(log2 K)-bit indices, 1 Huffman against the prior
                 b0      reserved, 0
    2    4     device id, u32 big-endian
    6    4     frame counter, u32 big-endian (also the AEAD nonce and the replay-window key)
    10   1     tokenizer id (link.tokenizers.TOKENIZERS)
    11   1     grid height in tokens, 1..255
    12   1     grid width in tokens, 1..255
    13   2     slice start: first raster position (row * grid_w + col) this fragment covers, u16 BE
    15   1..3  slice length in positions, unsigned LEB128 (minimal encoding), >= 1
    [+2]       prior id, u16 BE: only when index mode is 1 (CRC-16 of the code, see link.entropy)
    [+10]      frame info, only when the info flag is set:
                 capture time, unix ms, u48 BE; image width u16 BE; image height u16 BE
    then       payload (AEAD ciphertext when sealed), then the tag

So a fragment costs 16 bytes of header at slices under 128 positions (typical at MTU 51),
17 at larger ones, plus 10 on the first fragment, plus the tag. The whole header is the AEAD
associated data. Trade-offs are discussed in link/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from link.errors import MalformedPacket, UnsupportedVersion
from link.security import TAG_LENGTHS
from link.tokenizers import get_tokenizer

VERSION = 1
FIXED_LEN = 15  # bytes before the slice-length varint
INFO_LEN = 10
PRIOR_ID_LEN = 2

MASK_RAW, MASK_RUNS, MASK_ALL, MASK_NONE = 0, 1, 2, 3
MASK_MODES = ("raw", "runs", "all_kept", "none_kept")
INDEX_RAW, INDEX_PRIOR = 0, 1
INDEX_MODES = ("raw", "prior")


def varint_len(n: int) -> int:
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int, max_bytes: int = 3) -> tuple[int, int]:
    value = shift = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise MalformedPacket("header truncated in the slice length")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if i and byte == 0:
                raise MalformedPacket("slice length is not minimally encoded")
            return value, pos + i + 1
    raise MalformedPacket(f"slice length varint longer than {max_bytes} bytes")


def header_len(slice_len: int, *, info: bool, prior: bool) -> int:
    return FIXED_LEN + varint_len(slice_len) + (PRIOR_ID_LEN if prior else 0) + (INFO_LEN if info else 0)


@dataclass(frozen=True)
class FragmentHeader:
    device_id: int
    counter: int
    tokenizer_id: int
    grid_h: int
    grid_w: int
    slice_start: int
    slice_len: int
    tag_len: int
    mask_mode: int
    index_mode: int
    prior_id: int | None = None
    capture_ms: int | None = None
    width: int | None = None
    height: int | None = None
    version: int = VERSION

    @property
    def info(self) -> bool:
        return self.capture_ms is not None

    @property
    def slice_end(self) -> int:
        return self.slice_start + self.slice_len

    @property
    def size(self) -> int:
        return header_len(self.slice_len, info=self.info, prior=self.prior_id is not None)

    def pack(self) -> bytes:
        flags = (TAG_LENGTHS.index(self.tag_len) << 5) | (self.info << 4) | (self.mask_mode << 2) | (self.index_mode << 1)
        out = bytearray((VERSION, flags))
        out += self.device_id.to_bytes(4, "big") + self.counter.to_bytes(4, "big")
        out += bytes((self.tokenizer_id, self.grid_h, self.grid_w))
        out += self.slice_start.to_bytes(2, "big") + encode_varint(self.slice_len)
        if self.prior_id is not None:
            out += self.prior_id.to_bytes(2, "big")
        if self.capture_ms is not None:
            out += self.capture_ms.to_bytes(6, "big")
            out += (self.width or 0).to_bytes(2, "big") + (self.height or 0).to_bytes(2, "big")
        return bytes(out)

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version, "device_id": self.device_id, "counter": self.counter,
            "tokenizer_id": self.tokenizer_id, "grid": [self.grid_h, self.grid_w],
            "slice": [self.slice_start, self.slice_end], "tag_len": self.tag_len,
            "mask_mode": MASK_MODES[self.mask_mode], "index_mode": INDEX_MODES[self.index_mode],
            "prior_id": self.prior_id, "capture_ms": self.capture_ms, "width": self.width, "height": self.height,
        }


def parse_header(data: bytes) -> FragmentHeader:
    """Parse and validate the clear header; raises only LinkError subclasses."""
    if len(data) < FIXED_LEN + 1:
        raise MalformedPacket(f"fragment of {len(data)} bytes is shorter than the minimal header")
    if data[0] != VERSION:
        raise UnsupportedVersion(f"wire version {data[0]} not supported; this build speaks {VERSION}")
    flags = data[1]
    if flags & 1:
        raise MalformedPacket("reserved flag bit set")
    tag_len = TAG_LENGTHS[flags >> 5]
    info = bool(flags & 0x10)
    mask_mode, index_mode = (flags >> 2) & 3, (flags >> 1) & 1
    if mask_mode == MASK_NONE and index_mode:
        raise MalformedPacket("prior index mode on a fragment with no kept tokens")
    device_id = int.from_bytes(data[2:6], "big")
    counter = int.from_bytes(data[6:10], "big")
    tokenizer_id, grid_h, grid_w = data[10], data[11], data[12]
    get_tokenizer(tokenizer_id)  # UnknownTokenizer
    if not grid_h or not grid_w:
        raise MalformedPacket(f"grid {grid_h}x{grid_w} has an empty side")
    start = int.from_bytes(data[13:15], "big")
    length, pos = decode_varint(data, FIXED_LEN)
    n = grid_h * grid_w
    if length < 1 or start + length > n:
        raise MalformedPacket(f"slice [{start}, {start + length}) does not fit a {grid_h}x{grid_w} grid")
    if info != (start == 0):
        raise MalformedPacket("frame info must be present exactly on the fragment starting at 0")
    prior_id = capture_ms = width = height = None
    if index_mode:
        if pos + 2 > len(data):
            raise MalformedPacket("header truncated in the prior id")
        prior_id = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
    if info:
        if pos + INFO_LEN > len(data):
            raise MalformedPacket("header truncated in the frame info")
        capture_ms = int.from_bytes(data[pos : pos + 6], "big")
        width = int.from_bytes(data[pos + 6 : pos + 8], "big")
        height = int.from_bytes(data[pos + 8 : pos + 10], "big")
        if not width or not height:
            raise MalformedPacket(f"image size {width}x{height} has an empty side")
        pos += INFO_LEN
    if pos + tag_len > len(data):
        raise MalformedPacket(f"fragment of {len(data)} bytes too short for its header and {tag_len}-byte tag")
    return FragmentHeader(device_id, counter, tokenizer_id, grid_h, grid_w, start, length, tag_len,
                          mask_mode, index_mode, prior_id, capture_ms, width, height)
