"""The DeviceGEMM wire format of sstemu's front end (docs/wire.md), client side.

Requests are ``magic | u32 BE JSON length | op byte | JSON | (u32 BE length | float32 LE data)*``;
responses are ``u32 BE R | R bytes of result`` and, when the request asked for
``"timing": true``, ``u32 BE T | T bytes of JSON`` (the timing record). TIME (op 0x04) and
INFO (op 0x05) carry no tensors and are answered by one JSON section.

Everything read from the socket is checked before it is used: lengths against what the op
implies or against a named limit, JSON for validity. A mismatch raises :class:`ProtocolError`
naming the field and its byte offset in the response.
"""

import json
import struct

MAGIC = 0xDEADBEEF
OP_GEMM = 0x01
OP_CONV = 0x02
OP_MATMUL = 0x03
OP_TIME = 0x04
OP_INFO = 0x05

OP_NAMES = {OP_GEMM: "GEMM", OP_CONV: "CONV", OP_MATMUL: "MATMUL", OP_TIME: "TIME", OP_INFO: "INFO"}

#: Bytes of the request header: magic, JSON length, op type.
HEADER_SIZE = 9
#: Bytes of every length prefix (tensor sections, result, timing record).
LENGTH_SIZE = 4
#: Bytes of one float32 element.
FLOAT32_SIZE = 4
#: The JSON limit of GEMM/CONV/MATMUL requests (docs/wire.md, "Limits").
DEFAULT_MAX_JSON = 65536
#: The most TIME entries in one frame (issue 11) unless INFO says otherwise.
DEFAULT_MAX_TIME_ENTRIES = 4096
#: The most GEMMs and FLOPs the entries of one TIME frame may sum to (issue 11's bounds).
DEFAULT_MAX_TIME_GEMMS = 1 << 32
DEFAULT_MAX_TIME_FLOPS = 1 << 60
#: The largest JSON section (timing record, TIME or INFO reply) this client accepts. A TIME
#: reply carries up to 4096 records of well under 1 KiB each.
MAX_REPLY_JSON = 64 << 20

_HEADER = struct.Struct(">IIB")
_LENGTH = struct.Struct(">I")


class DeviceError(RuntimeError):
    """The device server could not be reached, vanished, or answered something unusable."""


class ServerClosed(DeviceError):
    """The server closed the connection before answering, twice (it stopped, or refused the request)."""


class ProtocolError(DeviceError):
    """The server's answer broke the wire format: which field, at which byte offset, and why."""

    def __init__(self, op, field, offset, reason):
        self.op, self.field, self.offset, self.reason = op, field, offset, reason
        super().__init__("%s response: %s at byte %d: %s" % (op, field, offset, reason))


def header(op, meta):
    """The request header and JSON of one frame, as one bytes object."""
    body = json.dumps(meta, separators=(",", ":")).encode()
    return _HEADER.pack(MAGIC, len(body), op) + body


def length(n):
    """A u32 BE length prefix."""
    return _LENGTH.pack(n)


def unpack_length(buf):
    """The value of a u32 BE length prefix."""
    return _LENGTH.unpack(buf)[0]


def decode_json(op, field, offset, data):
    """Parses one JSON object section of a response, or raises :class:`ProtocolError`."""
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(op, field, offset, "not valid UTF-8 JSON (%s)" % e) from None
    if not isinstance(obj, dict):
        raise ProtocolError(op, field, offset, "a JSON %s, want an object" % type(obj).__name__)
    return obj


def check_json_length(op, field, offset, n):
    """Refuses a JSON section longer than :data:`MAX_REPLY_JSON` before it is read."""
    if n > MAX_REPLY_JSON:
        raise ProtocolError(op, field, offset, "%d bytes announced, more than the %d this client accepts" % (n, MAX_REPLY_JSON))


def check_result_length(op, offset, got, want):
    """Refuses a result whose announced length disagrees with the op's output shape."""
    if got != want:
        raise ProtocolError(op, "result length", offset, "%d bytes announced, the output shape needs %d" % (got, want))


def header_raw(op, body):
    """The request header followed by an already encoded JSON body."""
    return _HEADER.pack(MAGIC, len(body), op) + body

