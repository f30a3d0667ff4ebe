"""The clear fragment header of wire format v2 (two-layer tokenizers), packed and parsed here.

    off  size  field
    0    1     version, 0x02
    1    1     flags
                 b7..b5  tag code: 0 unsealed, else AEAD tag of (0,4,6,8,10,12,14,16)[code] bytes
                 b4      info: the frame-info block follows (only on a fragment whose slice starts at 0)
                 b3      layer: 0 fine tokens, 1 coarse layer
                 b2..b1  frame type: 0 key (coded alone), 1 delta (fine tokens against a reference frame,
                         no coarse layer: the cloud takes the reference's); 2, 3 reserved
                 b0      coarse fragments: block means (link.dc) follow the coarse levels; fine: reserved, 0
    2    4     device id, u32 BE
    6    4     frame counter, u32 BE
    10   1     tokenizer id (link.tokenizers.TOKENIZERS; must be a two-layer tokenizer)
    11   1     fine grid height in tokens, 1..255
    12   1     fine grid width in tokens, 1..255
    13   2     slice start, u16 BE: first raster position of *this layer's* grid the fragment covers
    15   1..3  slice length in positions, unsigned LEB128 (minimal), >= 1
    +1   1     coding: 0 raw bit fields; k >= 1 range coded with context-model set k (link.coding2)
    [+4]       reference counter, u32 BE: only for delta frames
    [+10]      frame info, only when the info flag is set:
                 capture time, unix ms, u48 BE; image width u16 BE; image height u16 BE
    then       payload (AEAD ciphertext when sealed), then the tag

17 bytes at slices under 128 positions, plus the tag. The coarse grid is derived from the fine
grid and the tokenizer (link.tokenizers.TokenizerSpec.coarse_grid), so it costs nothing. The
nonce tail (link.security.nonce) is ``layer 02``: a coarse and a fine slice with the same start
never share a nonce, nor do v1 and v2 fragments.
"""

from __future__ import annotations

from dataclasses import dataclass

from link.errors import MalformedPacket, UnsupportedVersion
from link.frame import FRAME_DELTA, FRAME_TYPES
from link.header import INFO_LEN, FragmentHeader, decode_varint, encode_varint, parse_header, varint_len
from link.security import TAG_LENGTHS
from link.tokenizers import get_tokenizer

VERSION = 2
FIXED_LEN = 15  # bytes before the slice-length varint
LAYER_FINE, LAYER_COARSE = 0, 1
LAYERS = ("fine", "coarse")
CODING_RAW = 0
REF_LEN = 4


def header_len(slice_len: int, *, info: bool, delta: bool) -> int:
    return FIXED_LEN + varint_len(slice_len) + 1 + (REF_LEN if delta else 0) + (INFO_LEN if info else 0)


@dataclass(frozen=True)
class FragmentHeader2:
    device_id: int
    counter: int
    tokenizer_id: int
    grid_h: int
    grid_w: int
    layer: int
    slice_start: int
    slice_len: int
    tag_len: int
    coding: int
    frame_type: int = 0
    ref_counter: int | None = None
    capture_ms: int | None = None
    width: int | None = None
    height: int | None = None
    version: int = VERSION
    dc: bool = False

    @property
    def info(self) -> bool:
        return self.capture_ms is not None

    @property
    def slice_end(self) -> int:
        return self.slice_start + self.slice_len

    @property
    def size(self) -> int:
        return header_len(self.slice_len, info=self.info, delta=self.frame_type == FRAME_DELTA)

    @property
    def nonce_tail(self) -> bytes:
        return bytes((self.layer, VERSION))

    def layer_positions(self) -> int:
        """Positions in this fragment's layer grid."""
        if self.layer == LAYER_FINE:
            return self.grid_h * self.grid_w
        ch, cw = get_tokenizer(self.tokenizer_id).coarse_grid(self.grid_h, self.grid_w)
        return ch * cw

    def pack(self) -> bytes:
        flags = ((TAG_LENGTHS.index(self.tag_len) << 5) | (self.info << 4) | (self.layer << 3)
                 | (self.frame_type << 1) | int(self.dc))
        out = bytearray((VERSION, flags))
        out += self.device_id.to_bytes(4, "big") + self.counter.to_bytes(4, "big")
        out += bytes((self.tokenizer_id, self.grid_h, self.grid_w))
        out += self.slice_start.to_bytes(2, "big") + encode_varint(self.slice_len)
        out.append(self.coding)
        if self.frame_type == FRAME_DELTA:
            out += (self.ref_counter or 0).to_bytes(4, "big")
        if self.capture_ms is not None:
            out += self.capture_ms.to_bytes(6, "big")
            out += (self.width or 0).to_bytes(2, "big") + (self.height or 0).to_bytes(2, "big")
        return bytes(out)

    def as_dict(self) -> dict[str, object]:
        return {
            "version": self.version, "device_id": self.device_id, "counter": self.counter,
            "tokenizer_id": self.tokenizer_id, "grid": [self.grid_h, self.grid_w], "layer": LAYERS[self.layer],
            "slice": [self.slice_start, self.slice_end], "tag_len": self.tag_len, "coding": self.coding,
            "frame_type": FRAME_TYPES[self.frame_type], "ref_counter": self.ref_counter,
            "capture_ms": self.capture_ms, "width": self.width, "height": self.height, "dc": self.dc,
        }


def parse_header2(data: bytes) -> FragmentHeader2:
    """Parse and validate a v2 clear header; raises only LinkError subclasses."""
    if len(data) < FIXED_LEN + 2:
        raise MalformedPacket(f"fragment of {len(data)} bytes is shorter than the minimal v2 header")
    if data[0] != VERSION:
        raise UnsupportedVersion(f"wire version {data[0]} is not v2")
    flags = data[1]
    tag_len = TAG_LENGTHS[flags >> 5]
    info = bool(flags & 0x10)
    layer = (flags >> 3) & 1
    has_dc = bool(flags & 1)
    if has_dc and layer != LAYER_COARSE:
        raise MalformedPacket("reserved flag bit set")
    frame_type = (flags >> 1) & 3
    if frame_type >= len(FRAME_TYPES):
        raise MalformedPacket(f"frame type {frame_type} is reserved")
    device_id = int.from_bytes(data[2:6], "big")
    counter = int.from_bytes(data[6:10], "big")
    tokenizer_id, grid_h, grid_w = data[10], data[11], data[12]
    spec = get_tokenizer(tokenizer_id)  # UnknownTokenizer
    if not spec.layered:
        raise MalformedPacket(f"wire v2 needs a two-layer tokenizer; {spec.name} has one layer")
    if not grid_h or not grid_w:
        raise MalformedPacket(f"grid {grid_h}x{grid_w} has an empty side")
    start = int.from_bytes(data[13:15], "big")
    length, pos = decode_varint(data, FIXED_LEN)
    if layer == LAYER_FINE:
        n = grid_h * grid_w
    else:
        ch, cw = spec.coarse_grid(grid_h, grid_w)
        n = ch * cw
    if length < 1 or start + length > n:
        raise MalformedPacket(f"{LAYERS[layer]} slice [{start}, {start + length}) does not fit its {n}-cell grid")
    if info and start != 0:
        raise MalformedPacket("frame info is only allowed on a fragment starting at 0")
    if layer == LAYER_COARSE and frame_type == FRAME_DELTA:
        raise MalformedPacket("a delta frame carries no coarse layer")
    if pos >= len(data):
        raise MalformedPacket("header truncated in the coding byte")
    coding = data[pos]
    pos += 1
    ref_counter = capture_ms = width = height = None
    if frame_type == FRAME_DELTA:
        if pos + REF_LEN > len(data):
            raise MalformedPacket("header truncated in the reference counter")
        ref_counter = int.from_bytes(data[pos : pos + REF_LEN], "big")
        if ref_counter >= counter:
            raise MalformedPacket(f"reference {ref_counter} is not older than frame {counter}")
        pos += REF_LEN
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
    return FragmentHeader2(device_id, counter, tokenizer_id, grid_h, grid_w, layer, start, length, tag_len,
                           coding, frame_type, ref_counter, capture_ms, width, height, dc=has_dc)


def parse_any_header(data: bytes) -> FragmentHeader | FragmentHeader2:
    """v1 or v2 header by the version byte (UnsupportedVersion names both when it is neither)."""
    if data[:1] == bytes((VERSION,)):
        return parse_header2(data)
    if data[:1] and data[0] not in (1, VERSION):
        raise UnsupportedVersion(f"wire version {data[0]} not supported; this build speaks 1 and {VERSION}")
    return parse_header(data)
