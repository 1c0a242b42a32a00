"""Reading an ONNX file with its weights straight into aligned NumPy arrays (the fast load path).

``onnx.load`` reads the file into one bytes object, the protobuf parser copies every initializer's
``raw_data`` into its own arena, ``tensor.raw_data`` copies it again into a new bytes object and
``numpy_helper.to_array`` views that. For a 130 MB model that is four passes over the weights and
about 400 MB of fresh pages, whose first-touch faults cost more than the copies (docs/networks.md,
"The load path"). Here the protobuf wire format is walked just deep enough to find
``ModelProto.graph.initializer[i].raw_data``: each such payload is read once from the file into a
64-byte aligned, writable slice of one block (:func:`_read_payloads`), and the model
without those initializers (a few kilobytes of nodes and attributes) goes to the ``onnx`` parser as
before.

Only the plain case is taken: a little-endian host, a tensor of a native NumPy dtype whose fields are
``dims``, ``data_type``, ``name``, ``raw_data`` (and ``doc_string``), with ``raw_data`` of the size
its dims say. Any other initializer (external data, typed ``float_data`` fields, exotic dtypes) stays
in the stripped model and is converted by ``onnx`` as before; anything unexpected in the framing
(a group wire type, a length past the end) makes :func:`read_model` return ``None`` and the caller
falls back to ``onnx.load``.
"""

from __future__ import annotations

import io
import math
import os
import sys
from typing import BinaryIO, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .pages import fresh_bytes

# TensorProto.DataType -> NumPy dtype, for the types whose raw_data is the array's bytes
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
           9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
_NP_DTYPES = {t: np.dtype(t) for t in _DTYPES.values()}  # (np.dtype() costs a call per tensor)
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_T_DIMS, _T_DATA_TYPE, _T_NAME, _T_RAW, _T_DOC = 1, 2, 8, 9, 12
_ALIGN = 64


class _Unusual(Exception):
    """The framing is not what the fast path reads: fall back to ``onnx.load``."""


class _Reader:
    """Fields off a file through a window of it (no call per byte); payloads skipped by moving on."""

    WINDOW = 1 << 12  # a tensor's header is tens of bytes: a big window would re-read its payload

    def __init__(self, f: BinaryIO, end: int) -> None:
        self.f, self.end = f, end
        self.buf, self.base, self.i = b"", f.tell(), 0  # the window holds file bytes [base, base + len)
        # a real file: positional reads (one system call each, no seek, no copy through f's buffer)
        try:
            self.fd = f.fileno() if hasattr(os, "pread") else None
        except (AttributeError, OSError, io.UnsupportedOperation):
            self.fd = None

    def pos(self) -> int:
        return self.base + self.i

    def seek(self, pos: int) -> None:
        if self.base <= pos <= self.base + len(self.buf):
            self.i = pos - self.base  # inside the window
        else:
            self.buf, self.base, self.i = b"", pos, 0

    def _fill(self, n: int) -> None:
        if self.i + n > len(self.buf):
            pos = self.pos()
            if self.fd is not None:
                self.buf = os.pread(self.fd, max(n, self.WINDOW), pos)
            else:
                self.f.seek(pos)
                self.buf = self.f.read(max(n, self.WINDOW))
            self.base, self.i = pos, 0

    def read(self, n: int) -> bytes:
        if n < 0 or self.pos() + n > self.end:
            raise _Unusual("length past the end")
        self._fill(n)
        if self.i + n > len(self.buf):
            raise _Unusual("short read")
        b = self.buf[self.i:self.i + n]
        self.i += n
        return b

    def varint(self) -> int:
        self._fill(10)
        buf, i = self.buf, self.i
        shift = value = 0
        while True:
            if i >= len(buf) or self.base + i >= self.end:
                raise _Unusual("varint past the end")
            byte = buf[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.i = i
                return value
            shift += 7
            if shift > 63:
                raise _Unusual("varint too long")

    def tag(self) -> Tuple[int, int]:
        t = self.varint()
        return t >> 3, t & 7

    def forward(self, n: int) -> None:
        if n < 0 or self.pos() + n > self.end:
            raise _Unusual("field past the end")
        self.i += n

    def skip(self, wire: int) -> None:
        """Skip one field's payload (after its tag)."""
        if wire == 0:
            self.varint()
        elif wire == 1:
            self.forward(8)
        elif wire == 2:
            self.forward(self.varint())
        elif wire == 5:
            self.forward(4)
        else:
            raise _Unusual(f"wire type {wire}")

    def read_into(self, pos: int, out: np.ndarray) -> None:
        """``out.nbytes`` file bytes at ``pos`` straight into ``out`` (no window copy)."""
        if self.fd is not None and hasattr(os, "preadv"):
            got = os.preadv(self.fd, [memoryview(out)], pos)
        else:
            self.f.seek(pos)
            got = self.f.readinto(memoryview(out))
        if got != out.nbytes:
            raise _Unusual("short read")
        self.buf, self.base, self.i = b"", pos + out.nbytes, 0

    def read_all_into(self, pieces: List[Tuple[int, np.ndarray]]) -> None:
        """Each ``(pos, out)`` (in file order, not overlapping) as :meth:`read_into`, in few system calls:
        a run of pieces whose gaps (the tensor headers between payloads) are at most :data:`GAP` bytes is
        one ``preadv``, the gaps read into one scratch buffer (lraspp: 265 payloads, one call)."""
        if self.fd is None or not hasattr(os, "preadv"):
            for pos, out in pieces:
                self.read_into(pos, out)
            return
        pieces = [(pos, out) for pos, out in pieces if out.nbytes]
        scratch = memoryview(bytearray(self.GAP))
        i = 0
        while i < len(pieces):
            start, end = pieces[i][0], pieces[i][0] + pieces[i][1].nbytes
            run = [memoryview(pieces[i][1])]
            j = i + 1
            while (j < len(pieces) and len(run) + 2 <= _IOV_MAX and end <= pieces[j][0] <= end + self.GAP):
                if pieces[j][0] > end:
                    run.append(scratch[:pieces[j][0] - end])
                run.append(memoryview(pieces[j][1]))
                end = pieces[j][0] + pieces[j][1].nbytes
                j += 1
            if os.preadv(self.fd, run, start) != end - start:  # (a file cut short under us): piece by piece
                for pos, out in pieces[i:j]:
                    self.read_into(pos, out)
            i = j
            self.buf, self.base, self.i = b"", end, 0  # at the end of the run, as read_into leaves it

    GAP = 1 << 12  # a longer gap (a tensor the fast path leaves to onnx, the nodes) ends a run


def _iov_max() -> int:
    """The most buffers one ``preadv`` takes (Linux: 1024)."""
    try:
        n = int(os.sysconf("SC_IOV_MAX"))
    except (AttributeError, ValueError, OSError):
        n = -1
    return n if n >= 2 else 16


_IOV_MAX = _iov_max()


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint_bytes(number << 3 | 2) + _varint_bytes(len(payload)) + payload


class _Payload(NamedTuple):
    """Where a plain initializer's ``raw_data`` lies in the file, and what array it is."""

    pos: int
    nbytes: int
    dtype: np.dtype
    dims: Tuple[int, ...]


_HEADER = 256  # bytes a tensor's header is looked for in (more: the field walk); a window holding them
# already (a tensor right after the tag that the window was read for) is not read again
_WINDOW_MISS = object()  # _tensor_in_window: a field the window does not hold (the general walk takes it)


def _tensor(r: _Reader, end: int) -> Optional[Tuple[str, _Payload]]:
    """One TensorProto in [pos, end): ``(name, where its payload is)`` in the plain case, else ``None``.

    The header (dims, type, name: tens of bytes before the payload, which PyTorch's and onnx's
    serializers write last but for doc_string) is parsed straight off the reader's window in one
    function; a tensor it cannot finish there (a header longer than the window, fields after the
    payload) is walked again field by field (:func:`_tensor_fields`). Same result either way.
    """
    start = r.pos()
    r._fill(min(end - start, _HEADER))
    got = _tensor_in_window(r.buf, r.i, r.base, end)
    if got is _WINDOW_MISS:
        r.seek(start)
        return _tensor_fields(r, end)
    r.seek(end)
    return got  # type: ignore[return-value]


def _tensor_in_window(buf: bytes, i: int, base: int, end: int):
    """:func:`_tensor` on ``buf`` (file bytes from offset ``base``), from index ``i`` to file offset
    ``end``; :data:`_WINDOW_MISS` where a field lies past the window."""
    stop = end - base  # the tensor's end as an index of buf (maybe past it: the payload's bytes)
    dims: List[int] = []
    dtype = name = None
    raw: Optional[Tuple[int, int]] = None
    plain = True
    try:
        while i < stop:
            key = buf[i]  # (every tag of a TensorProto field below 16 is one byte: no call for it)
            if key < 0x80:
                i += 1
            else:
                key, i = _uvarint(buf, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value = buf[i]  # (a dim or a data type below 128: one byte)
                if value < 0x80:
                    i += 1
                else:
                    value, i = _uvarint(buf, i)
                if field == _T_DIMS:
                    dims.append(value)
                elif field == _T_DATA_TYPE:
                    dtype = _DTYPES.get(value)
                    plain = plain and dtype is not None
                elif field != _T_DOC:
                    plain = False
                continue
            if wire != 2:
                return _WINDOW_MISS  # fixed-size fields and the rest: the general walk
            n, i = _uvarint(buf, i)
            if n > stop - i:
                raise _Unusual("field past the end")
            if field == _T_RAW and raw is None:
                raw = (base + i, n)
                i += n
                continue
            if i + n > len(buf):
                return _WINDOW_MISS
            if field == _T_DIMS:  # packed
                j, dims_end = i, i + n
                while j < dims_end:
                    value, j = _uvarint(buf, j)
                    dims.append(value)
                if j != dims_end:
                    raise _Unusual("packed dims framing")
            elif field == _T_NAME:
                name = buf[i:i + n].decode("utf-8")
            elif field != _T_DOC:
                plain = False
            i += n
    except IndexError:  # a varint past the window
        return _WINDOW_MISS
    if i != stop:
        raise _Unusual("tensor framing")
    return _plain_tensor(plain, dtype, name, raw, dims)


def _uvarint(buf: bytes, i: int) -> Tuple[int, int]:
    """The varint at ``buf[i]`` and the index after it (IndexError past the buffer)."""
    byte = buf[i]
    if byte < 0x80:
        return byte, i + 1
    value, shift = byte & 0x7F, 7
    while True:
        i += 1
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
        if shift > 63:
            raise _Unusual("varint too long")


def _tensor_fields(r: _Reader, end: int) -> Optional[Tuple[str, _Payload]]:
    """:func:`_tensor` field by field through the reader (any header length, fields in any order)."""
    dims: List[int] = []
    dtype = name = None
    raw: Optional[Tuple[int, int]] = None  # (file offset, length) of raw_data
    plain = True
    while r.pos() < end:
        field, wire = r.tag()
        if field == _T_DIMS and wire == 0:
            dims.append(r.varint())
        elif field == _T_DIMS and wire == 2:  # packed
            n = r.varint()
            stop = r.pos() + n
            while r.pos() < stop:
                dims.append(r.varint())
        elif field == _T_DATA_TYPE and wire == 0:
            dtype = _DTYPES.get(r.varint())
            plain = plain and dtype is not None
        elif field == _T_NAME and wire == 2:
            name = r.read(r.varint()).decode("utf-8")
        elif field == _T_RAW and wire == 2 and raw is None:
            n = r.varint()
            raw = (r.pos(), n)
            r.forward(n)
        elif field == _T_DOC:
            r.skip(wire)
        else:  # any other field (external data, typed data, a repeated raw_data): onnx converts it
            r.skip(wire)
            plain = False
    if r.pos() != end:
        raise _Unusual("tensor framing")
    return _plain_tensor(plain, dtype, name, raw, dims)


def _plain_tensor(plain: bool, dtype, name: Optional[str], raw: Optional[Tuple[int, int]],
                  dims: List[int]) -> Optional[Tuple[str, _Payload]]:
    if not plain or dtype is None or name is None or raw is None or (dims and max(dims) > 2**62):
        return None
    dt = _NP_DTYPES[dtype]
    count = math.prod(dims)  # (exact: Python integers)
    if count * dt.itemsize != raw[1]:
        return None
    return name, _Payload(raw[0], raw[1], dt, tuple(dims))


def _graph(r: _Reader, end: int, arrays: Dict[str, _Payload], order: List[str]) -> bytes:
    """The GraphProto in [pos, end) without its plain initializers (their payloads noted in ``arrays``).

    Every other field is kept as its bytes in the file: the file ranges between plain initializers
    (the nodes, then inputs and outputs, in serializers' field order) are read in one piece each.
    """
    kept: List[List[int]] = []  # file ranges [start, stop) kept as they are, adjacent ones merged
    while r.pos() < end:
        start = r.pos()
        r._fill(min(end - start, 20))  # a tag and a length, read off the window (every GraphProto field is
        buf, i = r.buf, r.i  # length-delimited: the others take the general walk below)
        key, i = _uvarint(buf, i)
        if key & 7 == 2 and i < len(buf):
            n, i = _uvarint(buf, i)
            stop = r.base + i + n
            if stop > end:
                raise _Unusual("field past the graph")
            r.i = i
            if key >> 3 != _GRAPH_INITIALIZER:
                r.seek(stop)
                _keep(kept, start, stop)
                continue
            got = _tensor(r, stop)
            if got is not None and got[0] not in arrays:
                arrays[got[0]] = got[1]
                order.append(got[0])
                continue
            order.append("")  # not plain: it stays in the model for onnx, filled in, in order, from its parse
        else:
            r.seek(start)
            r.skip(r.tag()[1])
            stop = r.pos()
        _keep(kept, start, stop)
    if r.pos() != end:
        raise _Unusual("graph framing")
    out = bytearray()
    for start, stop in kept:
        r.seek(start)
        out += r.read(stop - start)
    r.seek(end)
    return bytes(out)


def _keep(kept: List[List[int]], start: int, stop: int) -> None:
    """File range [start, stop) kept: appended to ``kept``, merged with the last range where adjacent."""
    if kept and kept[-1][1] == start:
        kept[-1][1] = stop
    else:
        kept.append([start, stop])


def read_model(f: BinaryIO, size: int) -> Optional[Tuple[bytes, Dict[str, np.ndarray], List[str]]]:
    """``(model bytes without the plain initializers, {name: array}, initializer order)``, or ``None``.

    ``order`` lists every initializer of the graph in file order: a name read here, or "" for one left
    in the model bytes (the n-th "" is the n-th initializer onnx parses).
    """
    walked = walk(f, size)
    if walked is None:
        return None
    stripped, payloads, order, r = walked
    arrays = read_payloads(r, payloads)
    return None if arrays is None else (stripped, arrays, order)


def walk(f: BinaryIO, size: int) -> Optional[Tuple[bytes, Dict[str, _Payload], List[str], _Reader]]:
    """:func:`read_model` without reading the payloads: ``(model bytes without the plain initializers,
    {name: where its payload lies}, initializer order, a reader of ``f``)``, or ``None``."""
    if sys.byteorder != "little":
        return None
    r = _Reader(f, size)
    payloads: Dict[str, _Payload] = {}
    order: List[str] = []
    out = bytearray()
    seen_graph = False
    try:
        while r.pos() < size:
            start = r.pos()
            field, wire = r.tag()
            if field == _MODEL_GRAPH and wire == 2:
                if seen_graph:  # a repeated graph field (protobuf merges them): left to onnx
                    raise _Unusual("two graphs")
                seen_graph = True
                n = r.varint()
                stop = r.pos() + n
                if stop > size:
                    raise _Unusual("graph past the end")
                out += _field(field, _graph(r, stop, payloads, order))
                continue
            r.skip(wire)
            stop = r.pos()
            r.seek(start)
            out += r.read(stop - start)
    except (_Unusual, IndexError, UnicodeDecodeError):
        return None
    return bytes(out), payloads, order, r


def read_payloads(r: _Reader, payloads: Dict[str, _Payload]) -> Optional[Dict[str, np.ndarray]]:
    """:func:`_read_payloads`, or ``None`` where the file was cut short under us."""
    try:
        return _read_payloads(r, payloads)
    except _Unusual:
        return None


class StandIn(np.ndarray):
    """What the graph holds for an initializer left in the file (:class:`Deferred`): its shape and
    dtype, no memory (one NaN broadcast, read-only: a read of it by mistake gives NaN, never plausible
    numbers); it pickles as that (the weights travel in their layers' packed form, ops_conv.py)."""

    def __reduce__(self):
        return stand_in, (self.dtype.str, self.shape)


def stand_in(dtype, shape: Tuple[int, ...]) -> StandIn:
    return np.broadcast_to(np.array(np.nan, dtype), tuple(shape)).view(StandIn)


class Deferred:
    """Plain initializers left in the file at load: each read once, straight into a buffer the caller
    gives (load_onnx packs convolution weights from there: no copy of them is kept; ops_conv.py).

    It holds the open file until :meth:`close` (the end of the load); the payloads' places are those
    the load's walk found, so what is read is the file the model was parsed from.
    """

    def __init__(self, r: _Reader, f: BinaryIO, payloads: Dict[str, _Payload]) -> None:
        self._r, self._f, self.payloads = r, f, payloads

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Initializer ``name``'s bytes into ``out`` (C-contiguous, of its dtype and size)."""
        p = self.payloads[name]
        if out.nbytes != p.nbytes or not out.flags.c_contiguous:
            raise ValueError(f"initializer {name!r} has {p.nbytes} bytes, got a buffer of {out.nbytes}")
        try:
            self._r.read_into(p.pos, out.reshape(-1).view(np.uint8))
        except _Unusual:
            raise OSError(f"the model file was cut short while initializer {name!r} was read") from None

    def close(self) -> None:
        self._f.close()


def _read_payloads(r: _Reader, payloads: Dict[str, _Payload]) -> Dict[str, np.ndarray]:
    """Every payload read once, in file order, into its own 64-byte aligned slice of one block.

    One block of 4 KiB pages, populated in one call (:mod:`.pages`: NumPy would give the larger tensors
    huge pages, which cost more on a VM, and fault the others in page by page), written in file order by
    as few ``preadv`` calls as the gaps between payloads allow (:meth:`_Reader.read_all_into`).
    """
    offsets, total = {}, 0
    for name, p in payloads.items():
        offsets[name] = total
        total += -(-p.nbytes // _ALIGN) * _ALIGN
    block = fresh_bytes(total, populate=True)  # all of it is written next
    arrays, pieces = {}, []
    for name, p in sorted(payloads.items(), key=lambda item: item[1].pos):
        buf = block[offsets[name]:offsets[name] + p.nbytes]
        pieces.append((p.pos, buf))
        arrays[name] = buf.view(p.dtype).reshape(p.dims)
    r.read_all_into(pieces)
    return arrays


def read_path(path: Union[str, os.PathLike[str]]) -> Optional[Tuple[bytes, Dict[str, np.ndarray], List[str]]]:
    with open(path, "rb") as f:
        return read_model(f, os.fstat(f.fileno()).st_size)


def read_bytes(data: bytes) -> Optional[Tuple[bytes, Dict[str, np.ndarray], List[str]]]:
    return read_model(io.BytesIO(data), len(data))
