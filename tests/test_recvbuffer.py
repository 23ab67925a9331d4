"""RecvBuffer and BufferPool on both backends: frames, bounds, end of stream,
exported views, bad arguments, filling from sockets and descriptors."""

from __future__ import annotations

import array
import errno
import gc
import os
import pickle
import signal
import socket
import struct
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import zerosock
from zerosock import _api, _compat

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
REFERENCE = _compat.load_backend("python")  # the typed reference the C backend must match


# -- stream building blocks ------------------------------------------------

pieces = st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"xyz", b"\x00", b"\xff"])
streams = st.lists(pieces, max_size=60).map(b"".join)
separators = st.sampled_from([b"\n", b"\r\n", b"xyz", b"a", b"\r\n\r\n"])


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@st.composite
def split_streams(draw: Any, stream: Any = streams) -> Tuple[bytes, List[bytes]]:
    data = draw(stream)
    cuts = draw(st.lists(st.integers(0, max(len(data), 1)), max_size=12))
    return data, split(data, cuts)


@st.composite
def prefixed_streams(draw: Any) -> bytes:
    """Frames of a one-byte length and that many bytes, maybe cut short at the end."""
    bodies = draw(st.lists(st.binary(max_size=40), max_size=12))
    data = b"".join(bytes([len(b)]) + b for b in bodies)
    return data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


# -- readers: each pulls one frame (or None) off a buffer ------------------

EOF_ERROR = "IncompleteReadError"


class Reader:
    """Drives one reader method the way a protocol would, collecting frames."""

    def __init__(self, method: str, **kwargs: Any) -> None:
        self.method = method
        self.kwargs = kwargs
        self.pending: Optional[int] = None  # length-prefixed: body length once the header is in

    def step(self, buf: Any) -> Any:
        if self.method in ("prefixed", "prefixed_view"):
            read = buf.readexactly if self.method == "prefixed" else buf.readexactly_view
            if self.pending is None:
                header = read(1)
                if header is None:
                    return None
                self.pending = bytes(header)[0]
            body = read(self.pending)
            if body is not None:
                self.pending = None
            return body
        return getattr(buf, self.method)(**self.kwargs)

    def drain(self, buf: Any, out: List[bytes], views: Optional[List[Any]] = None) -> None:
        while True:
            frame = self.step(buf)
            if frame is None:
                return
            if isinstance(frame, memoryview):
                out.append(bytes(frame))
                if views is not None:
                    views.append((frame, out[-1]))
                else:
                    frame.release()
            else:
                out.append(frame)
            if out[-1] == b"" and self.method.startswith("readline"):
                return  # end of stream: readline keeps answering b""

    def finish(self, buf: Any, out: List[bytes]) -> Any:
        """Drain after end of stream; return how the stream ended."""
        try:
            self.drain(buf, out)
        except zerosock.IncompleteReadError as exc:
            return (EOF_ERROR, exc.partial, exc.expected)
        return ("clean", len(buf))


def parse_all(make_reader: Callable[[], Reader], zs: Any, data: bytes) -> Tuple[List[bytes], Any]:
    buf = zs.RecvBuffer()
    buf.feed(data)
    buf.feed_eof()
    reader = make_reader()
    out: List[bytes] = []
    return out, reader.finish(buf, out)


def reference_frames(method: str, data: bytes, sep: bytes = b"\n",
                     keep: bool = True) -> Tuple[List[bytes], Any]:
    """What the readers must give, computed with plain bytes operations."""
    frames: List[bytes] = []
    if method.startswith(("prefixed", "readprefixed")):
        whole_frame = method.startswith("readprefixed")  # one call: the partial keeps the prefix
        i = 0
        while i < len(data):
            n = data[i]
            if i + 1 + n > len(data):
                if whole_frame:
                    return frames, (EOF_ERROR, data[i:], 1 + n)
                return frames, (EOF_ERROR, data[i + 1:], n)
            frames.append(data[i + 1:i + 1 + n])
            i += 1 + n
        return frames, (EOF_ERROR, b"", 1)
    if method.startswith("readline"):
        lines = data.split(b"\n")
        frames = [line + b"\n" for line in lines[:-1]]
        frames.append(lines[-1])
        if lines[-1]:
            frames.append(b"")
        return frames, ("clean", 0)
    rest = data
    while True:
        at = rest.find(sep)
        if at < 0:
            return frames, (EOF_ERROR, rest, None)
        frames.append(rest[:at + len(sep)] if keep else rest[:at])
        rest = rest[at + len(sep):]


READERS = {
    "readline": lambda sep, keep: Reader("readline"),
    "readline_view": lambda sep, keep: Reader("readline_view"),
    "readuntil": lambda sep, keep: Reader("readuntil", separator=sep, keep_separator=keep),
    "readuntil_view": lambda sep, keep: Reader("readuntil_view", separator=sep, keep_separator=keep),
    "prefixed": lambda sep, keep: Reader("prefixed"),
    "prefixed_view": lambda sep, keep: Reader("prefixed_view"),
    "readprefixed": lambda sep, keep: Reader("readprefixed", prefix_size=1),
    "readprefixed_view": lambda sep, keep: Reader("readprefixed_view", prefix_size=1,
                                                  byteorder="little"),
}


# -- the public contract ---------------------------------------------------

def test_backend_exports_the_contract(zs: Any) -> None:
    for name in _api.RECVBUFFER_NAMES:
        assert name in _api.BACKEND_NAMES
        assert getattr(zs, name) is getattr(zerosock, name) or zerosock.BACKEND != zs.BACKEND
    for name in _api.RECVBUFFER_MEMBERS:
        assert hasattr(zs.RecvBuffer, name), name
    for name in _api.BUFFERPOOL_MEMBERS:
        assert hasattr(zs.BufferPool, name), name
    assert issubclass(zs.IncompleteReadError, EOFError)


def test_exceptions_are_shared_by_both_backends(zs: Any) -> None:
    for name in ("IncompleteReadError", "LimitOverrunError", "BufferFullError", "PoolExhaustedError"):
        assert getattr(zs, name) is getattr(REFERENCE, name)


def test_c_module_is_compiled() -> None:
    from zerosock import _recvbuf_c
    assert _recvbuf_c.__file__.endswith((".so", ".pyd"))


# -- frames: any split gives what the whole stream gives -------------------

@pytest.mark.parametrize("method", sorted(READERS))
@PROPERTY
@given(stream=split_streams(), prefixed=prefixed_streams(), sep=separators, keep=st.booleans(),
       capacity=st.integers(1, 48), cuts=st.lists(st.integers(0, 600), max_size=12))
def test_any_split_of_fed_bytes_gives_the_same_frames(zs: Any, method: str, stream: Any,
                                                      prefixed: bytes, sep: bytes, keep: bool,
                                                      capacity: int, cuts: List[int]) -> None:
    if "prefixed" in method:
        data, chunks = prefixed, split(prefixed, cuts)
    else:
        data, chunks = stream
    make = lambda: READERS[method](sep, keep)  # noqa: E731
    whole = parse_all(make, zs, data)
    assert whole == reference_frames(method, data, sep, keep)

    buf = zs.RecvBuffer(capacity)
    reader = make()
    frames: List[bytes] = []
    for chunk in chunks:
        buf.feed(chunk)
        reader.drain(buf, frames)
    buf.feed_eof()
    assert (frames, reader.finish(buf, frames)) == whole


@pytest.mark.parametrize("method", ["readline", "readuntil_view", "prefixed", "readprefixed_view"])
@settings(PROPERTY, max_examples=60)
@given(stream=split_streams(), prefixed=prefixed_streams(), capacity=st.integers(1, 48),
       cuts=st.lists(st.integers(0, 600), max_size=12), use_fd=st.booleans())
def test_any_split_of_received_bytes_gives_the_same_frames(zs: Any, method: str, stream: Any,
                                                           prefixed: bytes, capacity: int,
                                                           cuts: List[int], use_fd: bool) -> None:
    if "prefixed" in method:
        data, chunks = prefixed, split(prefixed, cuts)
    else:
        data, chunks = stream
    make = lambda: READERS[method](b"\r\n", True)  # noqa: E731
    whole = parse_all(make, zs, data)

    reader_sock, writer = zs.socketpair()
    with reader_sock, writer:
        reader_sock.setblocking(False)
        source = reader_sock.fileno() if use_fd else reader_sock
        buf = zs.RecvBuffer(capacity)
        reader = make()
        frames: List[bytes] = []
        for chunk in chunks:
            writer.sendall(chunk)
            while buf.fill(source) is not None:
                reader.drain(buf, frames)
        writer.shutdown(socket.SHUT_WR)
        while buf.fill(source):
            reader.drain(buf, frames)
        assert buf.eof
        assert (frames, reader.finish(buf, frames)) == whole


@PROPERTY
@given(stream=split_streams(), capacity=st.integers(1, 32), hold=st.integers(1, 4))
def test_held_views_keep_their_bytes_while_the_buffer_moves_on(zs: Any, stream: Any,
                                                              capacity: int, hold: int) -> None:
    data, chunks = stream
    buf = zs.RecvBuffer(capacity)
    reader = Reader("readuntil_view", separator=b"\n")
    frames: List[bytes] = []
    views: List[Any] = []
    for chunk in chunks:
        try:
            buf.feed(chunk)
        except BufferError:
            assert views, "BufferError with no view exported"
            before = bytes(buf.view())
            for view, expected in views:
                assert bytes(view) == expected
                view.release()
            views.clear()
            assert bytes(buf.view()) == before
            buf.feed(chunk)
        reader.drain(buf, frames, views)
        for view, expected in views:
            assert bytes(view) == expected
        while len(views) > hold:
            views.pop(0)[0].release()
    for view, expected in views:
        assert bytes(view) == expected
        view.release()
    expected_frames, _ = reference_frames("readuntil", data, b"\n")
    assert frames == expected_frames


# -- the C backend behaves exactly as the Python reference -----------------

operations = st.lists(st.one_of(
    st.tuples(st.just("feed"), st.binary(max_size=40)),
    st.tuples(st.just("fill"), st.binary(max_size=40)),
    st.tuples(st.just("get_buffer"), st.binary(max_size=40), st.booleans()),
    st.tuples(st.just("readexactly"), st.integers(-1, 30)),
    st.tuples(st.just("readexactly_view"), st.integers(0, 30)),
    st.tuples(st.just("readuntil"), separators, st.one_of(st.none(), st.integers(0, 40))),
    st.tuples(st.just("readline"), st.one_of(st.none(), st.integers(0, 40))),
    st.tuples(st.just("readprefixed"), st.sampled_from([1, 2, 4, 8, 3]),
              st.sampled_from(["big", "little", "middle"]), st.one_of(st.none(), st.integers(0, 300))),
    st.tuples(st.just("readprefixed_view"), st.sampled_from([1, 2]), st.just("big"), st.none()),
    st.tuples(st.just("peek"), st.integers(0, 50)),
    st.tuples(st.just("consume"), st.integers(0, 30)),
    st.tuples(st.just("find"), separators, st.integers(0, 20)),
    st.tuples(st.just("view"),),
    st.tuples(st.just("drop_view"), st.integers(0, 5)),
    st.tuples(st.just("clear"),),
    st.tuples(st.just("release"),),
    st.tuples(st.just("feed_eof"),),
), max_size=40)


def apply(buf: Any, op: Tuple[Any, ...], views: List[Any], pair: Tuple[Any, Any]) -> Any:
    name = op[0]
    try:
        if name == "feed":
            return buf.feed(op[1])
        if name == "fill":
            pair[1].sendall(op[1])
            return buf.fill(pair[0])
        if name == "get_buffer":  # as a BufferedProtocol transport does
            tail = buf.get_buffer(-1)
            n = min(len(tail), len(op[1]))
            tail[:n] = op[1][:n]
            if op[2]:
                views.append((tail, None))  # a transport slow to let go: it pins, its bytes change
            else:
                tail.release()
            return buf.buffer_updated(n), n
        if name in ("readexactly", "readexactly_view"):
            result = getattr(buf, name)(op[1])
        elif name == "readuntil":
            result = buf.readuntil(op[1], max_length=op[2])
        elif name == "readline":
            result = buf.readline(max_length=op[1])
        elif name in ("readprefixed", "readprefixed_view"):
            result = getattr(buf, name)(op[1], byteorder=op[2], max_length=op[3])
        elif name == "peek":
            result = buf.peek(op[1])
        elif name == "consume":
            return buf.consume(op[1])
        elif name == "find":
            return buf.find(op[1], op[2])
        elif name == "view":
            result = buf.view()
        elif name == "drop_view":
            if views:
                views.pop(op[1] % len(views))[0].release()
            return None
        else:
            return getattr(buf, name)()
    except Exception as exc:  # the outcome compared across backends
        return (type(exc).__name__, str(exc), getattr(exc, "partial", None))
    if isinstance(result, memoryview):
        views.append((result, bytes(result)))
        return ("view", bytes(result))
    return result


@settings(PROPERTY, max_examples=300)
@given(ops=operations, capacity=st.integers(1, 40), max_size=st.integers(40, 120))
def test_every_operation_matches_the_python_reference(zs: Any, ops: List[Tuple[Any, ...]],
                                                      capacity: int, max_size: int) -> None:
    ours, ref = zs.RecvBuffer(capacity, max_size=max_size), REFERENCE.RecvBuffer(capacity, max_size=max_size)
    our_views: List[Any] = []
    ref_views: List[Any] = []
    our_pair, ref_pair = zs.socketpair(), REFERENCE.socketpair()
    for sock in our_pair[:1] + ref_pair[:1]:
        sock.setblocking(False)
    try:
        for op in ops:
            assert apply(ours, op, our_views, our_pair) == apply(ref, op, ref_views, ref_pair), op
            check_same_state(ours, ref, max_size, our_views)
    finally:
        for sock in our_pair + ref_pair:
            sock.close()
    for view, _ in our_views + ref_views:
        view.release()


def check_same_state(ours: Any, ref: Any, max_size: int, our_views: List[Any]) -> None:
    state = (len(ours), bytes(ours.peek(len(ours))), ours.capacity, ours.eof, ours.at_eof())
    assert state == (len(ref), ref.peek(len(ref)), ref.capacity, ref.eof, ref.at_eof())
    assert len(ours) <= max_size
    for view, expected in our_views:
        assert expected is None or bytes(view) == expected


# -- end of stream ---------------------------------------------------------

def test_end_of_stream_mid_frame(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"abc")
    assert buf.readexactly(5) is None
    assert buf.readuntil(b"\n") is None
    assert not buf.eof
    buf.feed_eof()
    assert buf.eof and not buf.at_eof()
    with pytest.raises(zs.IncompleteReadError) as info:
        buf.readexactly(5)
    assert (info.value.partial, info.value.expected) == (b"abc", 5)
    assert isinstance(info.value, EOFError)
    with pytest.raises(zs.IncompleteReadError) as info:
        buf.readuntil_view(b"\n")
    assert (info.value.partial, info.value.expected) == (b"abc", None)
    assert len(buf) == 3, "an incomplete frame stays buffered"
    assert buf.readexactly(3) == b"abc"
    assert buf.at_eof()
    assert buf.readexactly(0) == b""
    with pytest.raises(zs.IncompleteReadError):
        buf.readexactly(1)
    assert buf.readline() == b""
    assert bytes(buf.readline_view()) == b""


def test_readline_at_end_of_stream_returns_the_rest(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"one\ntwo")
    assert buf.readline() == b"one\n"
    assert buf.readline() is None
    buf.feed_eof()
    assert buf.readline() == b"two"
    assert buf.readline() == b""
    assert buf.at_eof()


def test_readprefixed(zs: Any) -> None:
    buf = zs.RecvBuffer(4)
    buf.feed(b"\x00\x00\x00\x03abc\x02\x00hi\x00\x00\x00\x00\x00\x00\x00\x01!")
    assert buf.readprefixed() == b"abc"
    assert buf.readprefixed(2, byteorder="little") == b"hi"
    assert bytes(buf.readprefixed_view(8)) == b"!"
    buf.feed(b"\x00\x00\x01\x00" + b"x" * 10)
    with pytest.raises(zs.LimitOverrunError) as info:
        buf.readprefixed(max_length=255)
    assert info.value.limit == 255 and len(buf) == 14, "refused before the payload arrives"
    assert buf.readprefixed(max_length=256) is None
    buf.feed_eof()
    with pytest.raises(zs.IncompleteReadError) as incomplete:
        buf.readprefixed()
    assert (incomplete.value.partial, incomplete.value.expected) == (b"\x00\x00\x01\x00" + b"x" * 10, 260)
    buf.clear()
    buf.feed(b"\xff" * 8)
    assert len(buf) == 8
    with pytest.raises(zs.IncompleteReadError) as incomplete:
        buf.readprefixed(8)
    assert incomplete.value.expected == 8 + 2**64 - 1


def test_a_resumed_search_still_sees_bytes_changed_through_a_view(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"abcdef")
    assert buf.readuntil(b"\n") is None
    with buf.view() as view:
        view[1] = ord("\n")
    assert buf.readuntil(b"\n") == b"a\n"
    view = buf.view()
    assert buf.readuntil(b"x") is None  # searched while a view was out
    view[2] = ord("x")
    view.release()
    assert buf.readuntil(b"x") == b"cdx"


def test_a_resumed_search_starts_over_when_the_store_is_reused(zs: Any) -> None:
    a, b = zs.socketpair()
    with a, b:
        buf = zs.RecvBuffer(64)
        buf.feed(b"0123456789")
        assert buf.readuntil(b"x") is None
        buf.clear()
        b.sendall(b"ax")
        assert buf.fill(a) == 2  # empty: the store is reused from its start
        assert buf.readuntil(b"x") == b"ax"
        buf.feed(b"0123456789")
        assert buf.readuntil(b"y") is None
        buf.release()
        buf.feed(b"by")
        assert buf.readuntil(b"y") == b"by"


def test_a_slowly_arriving_long_line(zs: Any) -> None:
    buf = zs.RecvBuffer(16)
    for _ in range(2000):
        buf.feed(b"x" * 50 + b"\r")
        assert buf.readuntil(b"\r\n") is None
    buf.feed(b"\n")
    assert buf.readuntil(b"\r\n") == (b"x" * 50 + b"\r") * 2000 + b"\n"
    buf.feed(b"y\r\n")
    assert buf.readuntil(b"\r\n") == b"y\r\n" and len(buf) == 0


def test_incomplete_read_error_pickles(zs: Any) -> None:
    error = pickle.loads(pickle.dumps(zs.IncompleteReadError(b"ab", 4)))
    assert (error.partial, error.expected) == (b"ab", 4)
    error = pickle.loads(pickle.dumps(zs.LimitOverrunError("too long", 7)))
    assert error.limit == 7


# -- bounds ----------------------------------------------------------------

@PROPERTY
@given(data=streams, sep=separators, max_length=st.integers(0, 80))
def test_max_length_is_the_frame_length_with_its_separator(zs: Any, data: bytes, sep: bytes,
                                                          max_length: int) -> None:
    buf = zs.RecvBuffer(8)
    buf.feed(data)
    at = data.find(sep)
    if at >= 0 and at + len(sep) <= max_length:
        assert buf.readuntil(sep, max_length=max_length) == data[:at + len(sep)]
    elif len(data) >= max_length:
        with pytest.raises(zs.LimitOverrunError) as info:
            buf.readuntil(sep, max_length=max_length)
        assert info.value.limit == max_length
        assert len(buf) == len(data) and buf.peek(len(data)) == data, "buffer left as it was"
    else:
        assert buf.readuntil(sep, max_length=max_length) is None


def test_max_length_counts_a_separator_cut_at_the_limit(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"abc\r\n")
    with pytest.raises(zs.LimitOverrunError):
        buf.readuntil(b"\r\n", max_length=4)
    assert buf.readuntil(b"\r\n", max_length=5) == b"abc\r\n"
    buf.feed(b"abc\r")
    assert buf.readuntil(b"\r\n", max_length=5) is None
    with pytest.raises(zs.LimitOverrunError):
        buf.readline(max_length=4)


@PROPERTY
@given(chunks=st.lists(st.binary(max_size=50), max_size=20), capacity=st.integers(1, 40),
       extra=st.integers(0, 60))
def test_max_size_bounds_what_is_held(zs: Any, chunks: List[bytes], capacity: int, extra: int) -> None:
    max_size = capacity + extra
    buf = zs.RecvBuffer(capacity, max_size=max_size)
    held = b""
    for chunk in chunks:
        if len(held) + len(chunk) > max_size:
            with pytest.raises(zs.BufferFullError):
                buf.feed(chunk)
        else:
            buf.feed(chunk)
            held += chunk
        assert buf.peek(max_size + 1) == held
        assert buf.capacity <= max_size
        if len(held) > max_size // 2:
            buf.consume(len(held) // 2)
            held = held[len(held) // 2:]


def test_grows_to_fit_then_stops_at_max_size(zs: Any) -> None:
    buf = zs.RecvBuffer(4, max_size=20)
    buf.feed(b"x" * 9)
    assert buf.capacity == 16
    buf.feed(b"y" * 11)
    assert buf.capacity == 20 and len(buf) == 20
    with pytest.raises(zs.BufferFullError):
        buf.feed(b"z")
    assert len(buf) == 20
    assert zs.RecvBuffer(10**9 // 4).max_size == 10**9 // 4
    assert zs.RecvBuffer(1).max_size == 16 * 1024 * 1024


def test_fill_raises_buffer_full_and_loses_nothing(zs: Any) -> None:
    a, b = zs.socketpair()
    with a, b:
        b.sendall(b"0123456789")
        buf = zs.RecvBuffer(4, max_size=8)
        got = 0
        with pytest.raises(zs.BufferFullError):
            while True:
                got += buf.fill(a)
        assert got == 8 and buf.peek(8) == b"01234567"
        buf.consume(6)
        assert buf.fill(a) == 2
        assert buf.peek(8) == b"6789"


# -- exported views --------------------------------------------------------

def test_a_view_pins_the_store(zs: Any) -> None:
    buf = zs.RecvBuffer(8)
    buf.feed(b"abcdef")
    view = buf.readexactly_view(4)
    assert bytes(view) == b"abcd"
    buf.feed(b"gh")  # fits in the tail: nothing moves
    with pytest.raises(BufferError):
        buf.feed(b"i")  # would compact or grow
    with pytest.raises(BufferError):
        buf.release()
    assert bytes(view) == b"abcd" and buf.peek(10) == b"efgh"
    buf.clear()
    assert bytes(view) == b"abcd", "consumed bytes under a view are never overwritten"
    sliced = view[1:3]
    view.release()
    with pytest.raises(BufferError):
        buf.feed(b"i")  # the slice still pins the store
    assert bytes(sliced) == b"bc"
    sliced.release()
    buf.feed(b"ijkl")
    assert buf.peek(10) == b"ijkl"
    buf.release()
    assert buf.capacity == 0


def test_fill_reads_into_the_tail_while_a_view_is_held(zs: Any) -> None:
    a, b = zs.socketpair()
    with a, b:
        a.setblocking(False)
        buf = zs.RecvBuffer(8)
        b.sendall(b"12345678")
        assert buf.fill(a) == 8
        with buf.readexactly_view(2) as view:
            b.sendall(b"9")
            with pytest.raises(BufferError):
                buf.fill(a)  # no tail left and the store may not move
            assert bytes(view) == b"12" and len(buf) == 6
        assert buf.fill(a) == 1
        assert buf.peek(10) == b"3456789"


def test_memoryview_of_the_buffer_is_its_unread_bytes(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"hello world")
    buf.consume(6)
    assert bytes(buf) == b"world"
    if zs.BACKEND == "python" and sys.version_info < (3, 12):
        pytest.skip("a Python class exports the buffer protocol from 3.12")
    with memoryview(buf) as view:
        assert view.tobytes() == b"world"
        assert (view.format, view.itemsize, view.ndim, view.readonly) == ("B", 1, 1, False)
        with pytest.raises(BufferError):
            buf.release()


def test_views_are_writable_in_place(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(b"\x01\x02\x03")
    with buf.view() as view:
        view[0] ^= 0xFF  # e.g. unmasking a WebSocket payload where it lies
    assert buf.readexactly(3) == b"\xfe\x02\x03"


# -- bad arguments: the same exceptions on both backends -------------------

BAD_CALLS = [
    ("RecvBuffer(0)", ValueError),
    ("RecvBuffer(-5)", ValueError),
    ("RecvBuffer(1.5)", TypeError),
    ("RecvBuffer('4')", TypeError),
    ("RecvBuffer(8, max_size=4)", ValueError),
    ("RecvBuffer(8, max_size=2**70)", OverflowError),
    ("RecvBuffer(8, 16)", TypeError),
    ("buf.readexactly(-1)", ValueError),
    ("buf.readexactly(1.0)", TypeError),
    ("buf.readexactly(None)", TypeError),
    ("buf.readexactly(2**70)", OverflowError),
    ("buf.readexactly_view(-1)", ValueError),
    ("buf.peek(-1)", ValueError),
    ("buf.consume(-1)", ValueError),
    ("buf.consume(100)", ValueError),
    ("buf.readuntil(b'')", ValueError),
    ("buf.readuntil_view(bytearray())", ValueError),
    ("buf.readuntil('x')", TypeError),
    ("buf.readuntil(10)", TypeError),
    ("buf.readuntil(b'x', max_length=-1)", ValueError),
    ("buf.readuntil(b'x', max_length=1.5)", TypeError),
    ("buf.readuntil('', max_length=-1)", TypeError),
    ("buf.readuntil(b'', max_length=-1)", ValueError),
    ("buf.readuntil(b'x', 5)", TypeError),
    ("buf.readuntil(memoryview(b'abcd')[::2])", BufferError),
    ("buf.readline(max_length=-2)", ValueError),
    ("buf.readprefixed(3)", ValueError),
    ("buf.readprefixed(0)", ValueError),
    ("buf.readprefixed(-4)", ValueError),
    ("buf.readprefixed(2**70)", ValueError),
    ("buf.readprefixed(4.0)", TypeError),
    ("buf.readprefixed(byteorder='network')", ValueError),
    ("buf.readprefixed(byteorder=b'big')", ValueError),
    ("buf.readprefixed(3, byteorder='x')", ValueError),
    ("buf.readprefixed(max_length=-1)", ValueError),
    ("buf.readprefixed_view(1, max_length=1)", zerosock.LimitOverrunError),
    ("buf.find('a')", TypeError),
    ("buf.find(1)", TypeError),
    ("buf.find(b'a', -1)", ValueError),
    ("buf.find('a', -1)", TypeError),
    ("buf.get_buffer(1.5)", TypeError),
    ("buf.get_buffer('x')", TypeError),
    ("buf.buffer_updated(-1)", ValueError),
    ("buf.buffer_updated(13)", ValueError),
    ("buf.buffer_updated(None)", TypeError),
    ("buf.feed('text')", TypeError),
    ("buf.feed(None)", TypeError),
    ("buf.feed(7)", TypeError),
    ("buf.fill(-1)", OSError),
    ("buf.fill(None)", AttributeError),
    ("buf.fill(1.5)", AttributeError),
    ("pickle.dumps(buf)", TypeError),
    ("BufferPool(0, 1)", ValueError),
    ("BufferPool(8, -1)", ValueError),
    ("BufferPool(8, 1, max_size=4)", ValueError),
    ("BufferPool(8, 1).release(buf)", ValueError),
    ("BufferPool(8, 1).release(b'x')", TypeError),
    ("BufferPool(8, 0).acquire()", zerosock.PoolExhaustedError),
]


@pytest.mark.parametrize("call, error", BAD_CALLS, ids=[c for c, _ in BAD_CALLS])
def test_bad_arguments(zs: Any, call: str, error: type) -> None:
    def run(ns: Any) -> BaseException:
        buf = ns.RecvBuffer(16)
        buf.feed(b"abc\n")
        scope = {"RecvBuffer": ns.RecvBuffer, "BufferPool": ns.BufferPool, "buf": buf,
                 "pickle": pickle}
        with pytest.raises(error) as info:
            eval(call, scope)
        assert len(buf) == 4 and buf.peek(4) == b"abc\n", "a refused call changes nothing"
        return info.value

    ours, ref = run(zs), run(REFERENCE)
    assert type(ours) is type(ref)
    if type(ours).__module__ == "zerosock" or type(ours) is ValueError:
        assert str(ours) == str(ref)


def test_non_contiguous_and_typed_buffers_are_taken_as_bytes(zs: Any) -> None:
    buf = zs.RecvBuffer()
    buf.feed(array.array("H", [0x0A41, 0x0A42]))
    buf.feed(bytearray(b"xy\n"))
    buf.feed(memoryview(b"--z\n")[2:])
    assert buf.find(array.array("B", b"B")) == 2
    assert [buf.readline() for _ in range(4)] == [b"A\n", b"B\n", b"xy\n", b"z\n"]
    with pytest.raises(BufferError):
        buf.feed(memoryview(b"abcd")[::2])
    assert len(buf) == 0


def test_find(zs: Any) -> None:
    buf = zs.RecvBuffer(4)
    buf.feed(b"xxabcabc")
    buf.consume(2)
    for sub in (b"abc", b"c", b"bca", b"", b"zz", b"abcabcabc"):
        for start in (0, 1, 4, 6, 7):
            assert buf.find(sub, start) == b"abcabc".find(sub, start), (sub, start)
    assert buf.find(bytearray(b"ca")) == 2


# -- filling from sockets and descriptors ----------------------------------

def test_fill_from_each_kind_of_source(zs: Any) -> None:
    buf = zs.RecvBuffer()
    for pair in (zs.socketpair, socket.socketpair):
        a, b = pair()
        with a, b:
            for source in (a, a.fileno()):
                b.sendall(b"ping\n")
                assert buf.fill(source) == 5
                assert buf.readline() == b"ping\n"
            a.setblocking(False)
            assert buf.fill(a) is None
            assert buf.fill(a.fileno()) is None
            b.close()
            assert buf.fill(a) == 0
            assert buf.eof and buf.at_eof()
            buf = zs.RecvBuffer()


def test_fill_errors_are_the_stdlib_oserror_subclasses(zs: Any) -> None:
    buf = zs.RecvBuffer()
    a, b = zs.socketpair()
    b.close()
    a.close()
    with pytest.raises(OSError) as info:
        buf.fill(a)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        buf.fill(-3)
    assert info.value.errno == errno.EBADF
    if hasattr(os, "pipe") and sys.platform != "win32":
        r, w = os.pipe()
        try:
            with pytest.raises(OSError) as info:
                buf.fill(r)
            assert info.value.errno == errno.ENOTSOCK
        finally:
            os.close(r)
            os.close(w)
    # a connection reset, the way the stdlib reports it
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            client.sendall(b"unread")
            server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            server.close()  # unread data + linger 0: RST
            with pytest.raises(ConnectionResetError) as reset:
                while buf.fill(client) is not None:
                    pass
            assert reset.value.errno == errno.ECONNRESET
    assert len(buf) == 0


def test_fill_honours_the_socket_timeout(zs: Any) -> None:
    buf = zs.RecvBuffer()
    for pair in (zs.socketpair, socket.socketpair):
        a, b = pair()
        with a, b:
            a.settimeout(0.01)
            with pytest.raises(socket.timeout):
                buf.fill(a)
            b.sendall(b"late")
            assert buf.fill(a) == 4


def test_blocking_fill_waits_without_holding_the_gil(zs: Any) -> None:
    a, b = zs.socketpair()
    with a, b:
        buf = zs.RecvBuffer()
        result: List[Any] = []
        thread = threading.Thread(target=lambda: result.append(buf.fill(a)))
        thread.start()
        # While the other thread waits in fill(), this one runs Python code,
        # and calls that would move the store are refused, not raced.
        while True:
            try:
                buf.feed(b"x")
            except RuntimeError:
                break
            buf.clear()
        with pytest.raises(RuntimeError):
            buf.release()
        with pytest.raises(RuntimeError):
            buf.fill(a)
        b.sendall(b"data")
        thread.join()
        assert result == [4] and buf.peek(10)[-4:] == b"data"


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_a_signal_handler_interrupts_a_blocking_fill(zs: Any) -> None:
    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    a, b = zs.socketpair()
    try:
        with a, b:
            buf = zs.RecvBuffer()
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            with pytest.raises(Interrupted):
                buf.fill(a)
            b.sendall(b"after")
            assert buf.fill(a) == 5 and buf.readexactly(5) == b"after"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_signal_that_returns_lets_fill_carry_on(zs: Any) -> None:
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")
    seen: List[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    a, b = zs.socketpair()
    try:
        with a, b:
            buf = zs.RecvBuffer()
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            sender = threading.Timer(0.1, lambda: b.sendall(b"ok"))
            sender.start()
            assert buf.fill(a) == 2
            sender.join()
            assert seen
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_serves_an_asyncio_buffered_protocol(zs: Any) -> None:
    import asyncio

    class LineProtocol(asyncio.BufferedProtocol):
        def __init__(self, done: "asyncio.Future[List[bytes]]") -> None:
            self.buf = zs.RecvBuffer(16)
            self.get_buffer = self.buf.get_buffer  # type: ignore[method-assign]
            self.lines: List[bytes] = []
            self.done = done

        def buffer_updated(self, nbytes: int) -> None:
            self.buf.buffer_updated(nbytes)
            while (line := self.buf.readline()) is not None:
                self.lines.append(line)
                if line == b"":  # end of stream: readline keeps answering b""
                    break

        def eof_received(self) -> None:
            self.buf.feed_eof()
            self.buffer_updated(0)
            self.done.set_result(self.lines)

    expected = [b"line %d\n" % i for i in range(2000)] + [b"tail"]

    async def main() -> List[bytes]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        done: "asyncio.Future[List[bytes]]" = loop.create_future()
        transport, _ = await loop.connect_accepted_socket(lambda: LineProtocol(done), a)
        with b:
            b.setblocking(False)
            await loop.sock_sendall(b, b"".join(expected))
            b.shutdown(socket.SHUT_WR)
            lines = await done
        transport.close()
        return lines

    assert asyncio.run(main()) == expected + [b""]


# -- BufferPool ------------------------------------------------------------

def test_pool_hands_out_and_reuses_bounded_buffers(zs: Any) -> None:
    pool = zs.BufferPool(32, 2)
    assert (pool.size, pool.count, pool.in_use, pool.available) == (32, 2, 0, 2)
    first, second = pool.acquire(), pool.acquire()
    assert isinstance(first, zs.RecvBuffer) and first.capacity == 32 and len(first) == 0
    assert pool.in_use == 2 and pool.available == 0
    with pytest.raises(zs.PoolExhaustedError):
        pool.acquire()
    first.feed(b"x" * 100)  # grows past the pool size, up to max_size
    assert first.capacity == 128
    pool.release(first)
    assert first.capacity == 0 and len(first) == 0 and pool.in_use == 1
    with pytest.raises(ValueError):
        pool.release(first)  # already back
    again = pool.acquire()
    assert again.capacity == 32, "cut back to the pool size"
    with pytest.raises(ValueError):
        zs.BufferPool(32, 2).release(again)
    with again.readexactly_view(0) as view:
        with pytest.raises(BufferError):
            pool.release(again)
        assert bytes(view) == b""
    assert pool.in_use == 2
    again.release()  # same as pool.release(again)
    second.release()
    assert pool.in_use == 0
    first.feed(b"still usable")  # a released buffer allocates its own store
    assert first.readexactly(6) == b"still "


def test_pool_context_manager_and_garbage_collection(zs: Any) -> None:
    pool = zs.BufferPool(16, 1)
    with pool.acquire() as buf:
        buf.feed(b"data")
        assert pool.in_use == 1
    assert pool.in_use == 0 and buf.capacity == 0
    buf = pool.acquire()
    del buf
    gc.collect()
    assert pool.in_use == 0, "a dropped buffer gives its memory back"
    assert pool.acquire().capacity == 16


def test_pool_overflow_allocates_beyond_count(zs: Any) -> None:
    pool = zs.BufferPool(16, 1, overflow=True, max_size=64)
    assert pool.overflow and pool.max_size == 64
    kept, extra = pool.acquire(), pool.acquire()
    assert pool.in_use == 1 and extra.capacity == 16 and extra.max_size == 64
    with pytest.raises(zs.BufferFullError):
        extra.feed(b"x" * 65)
    pool.release(extra)
    pool.release(kept)
    assert pool.in_use == 0


def test_pool_with_no_buffers(zs: Any) -> None:
    with pytest.raises(zs.PoolExhaustedError):
        zs.BufferPool(16, 0).acquire()
    assert zs.BufferPool(16, 0, overflow=True).acquire().capacity == 16


def test_initialising_again_lets_go_of_the_old_store(zs: Any) -> None:
    pool = zs.BufferPool(16, 1)
    buf = pool.acquire()
    buf.feed(b"abc")
    with buf.view():
        with pytest.raises(BufferError):
            buf.__init__(8)
    assert len(buf) == 3 and pool.in_use == 1
    buf.__init__(8, max_size=9)
    assert (len(buf), buf.capacity, buf.max_size, pool.in_use) == (0, 8, 9, 0)


def test_repr(zs: Any) -> None:
    buf = zs.RecvBuffer(8, max_size=16)
    buf.feed(b"abc")
    buf.feed_eof()
    assert repr(buf) == "<zerosock.RecvBuffer len=3 capacity=8 max_size=16 eof>"
    assert repr(zs.BufferPool(8, 2)) == "<zerosock.BufferPool size=8 count=2 in_use=0>"


# -- leaks -----------------------------------------------------------------

LEAK_SCRIPT = r'''
import gc, socket, sys, psutil
from zerosock import _compat
zs = _compat.load_backend(sys.argv[1])

def attempt(call):
    try:
        call()
    except Exception:
        pass

def cycle():
    buf = zs.RecvBuffer(4096, max_size=1 << 16)
    buf.feed(b"line\r\n" * 50 + b"rest")
    while buf.readuntil(b"\r\n") is not None:
        pass
    view = buf.readexactly_view(2)
    attempt(lambda: buf.feed(b"x" * 8000))          # BufferError: pinned
    attempt(lambda: buf.readuntil(memoryview(b"ab")[::2]))
    attempt(lambda: buf.find("str"))
    attempt(lambda: buf.readuntil(b"q", max_length=1))
    view.release()
    buf.feed(bytearray(b"y" * 20000))                # grows
    buf.feed_eof()
    attempt(lambda: buf.readexactly(1 << 15))        # IncompleteReadError with a copy
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.sendall(b"z" * 3000)
        while buf.fill(a):
            buf.clear()
        b.close()
        buf.fill(a)
    attempt(lambda: buf.fill(-1))
    pool = zs.BufferPool(1024, 2, overflow=True)
    kept, extra, third = pool.acquire(), pool.acquire(), pool.acquire()
    kept.feed(b"k" * 5000)
    pool.release(kept)
    del extra, third
    with pool.acquire() as again:
        again.feed(b"a")

for _ in range(300):
    cycle()
gc.collect()
blocks, rss = sys.getallocatedblocks(), psutil.Process().memory_info().rss
for _ in range(3000):
    cycle()
gc.collect()
print(sys.getallocatedblocks() - blocks, psutil.Process().memory_info().rss - rss)
'''


@pytest.mark.leaks
def test_no_leaks_on_any_path(zs: Any) -> None:
    import subprocess
    pytest.importorskip("psutil")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", LEAK_SCRIPT, zs.BACKEND if zs.BACKEND == "c" else "python"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    blocks, rss = map(int, out.stdout.split())
    assert blocks < 500, f"{blocks} Python objects kept after 3,000 cycles"
    if "asan" not in os.environ.get("LD_PRELOAD", ""):  # AddressSanitizer quarantines freed memory
        assert rss < 8 << 20, f"resident memory grew by {rss} bytes over 3,000 cycles"
