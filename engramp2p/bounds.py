"""Shared wire bounds: every string, list and bytes field that crosses the network is annotated here.

msgspec enforces these while decoding, so a hostile peer cannot make us allocate beyond them. The
total size of a datagram or frame is checked before decoding by the framing layer.
"""

from typing import Annotated

from msgspec import Meta

NODE_ID_LEN = 16
MEMORY_ID_LEN = 16
HASH_LEN = 16
MAX_META_BYTES = 512
MAX_CONTENT_BYTES = 64 * 1024
MAX_MEMORY_META_BYTES = 4 * 1024
MAX_DIM = 4096
MAX_MEMBERS = 10_000

NodeId = Annotated[bytes, Meta(min_length=NODE_ID_LEN, max_length=NODE_ID_LEN)]
MemoryId = Annotated[bytes, Meta(min_length=MEMORY_ID_LEN, max_length=MEMORY_ID_LEN)]
Hash = Annotated[bytes, Meta(min_length=HASH_LEN, max_length=HASH_LEN)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]
Host = Annotated[str, Meta(min_length=1, max_length=255)]
Port = Annotated[int, Meta(ge=0, le=65535)]
U32 = Annotated[int, Meta(ge=0, le=2**32 - 1)]
# No upper bound: msgspec rejects bounds beyond int64, and msgpack cannot carry an int above 2**64 - 1.
U64 = Annotated[int, Meta(ge=0)]
HlcValue = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # SQLite INTEGER is signed 64-bit
Seq = Annotated[int, Meta(ge=1, le=2**63 - 1)]
SpaceName = Annotated[str, Meta(pattern=r"^[a-z0-9_-]{1,64}$")]
Shard = Annotated[int, Meta(ge=0, le=65535)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
Confidence = Annotated[float, Meta(gt=0.0, le=1.0)]
# msgspec bounds a str by code points, so on the wire these two allow up to 4x their byte figure (still
# bounded); the exact UTF-8 byte limits of DESIGN §6 are checked where writes enter (repl/validate.py).
Content = Annotated[str, Meta(max_length=MAX_CONTENT_BYTES)]
VectorBytes = Annotated[bytes, Meta(max_length=4 * MAX_DIM)]
MemberMetaBytes = Annotated[bytes, Meta(max_length=MAX_META_BYTES)]
MemoryMeta = Annotated[
    dict[Annotated[str, Meta(max_length=128)], Annotated[str, Meta(max_length=MAX_MEMORY_META_BYTES)]],
    Meta(max_length=64),
]
