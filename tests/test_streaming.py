"""UploadSink against a fake transport and writer: what reaches storage, in which pieces, and
when the client is paused (the memory an upload holds)."""

from types import SimpleNamespace

from twisted.internet import defer

from distregistry.api.streaming import CHUNK, HIGH_WATER, LOW_WATER, UploadSink


class Transport:
    def __init__(self):
        self.paused = False
        self.bufferSize = None

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False


class Writer:
    """Each write's Deferred fires when the test says the bytes are stored."""

    def __init__(self, fail=False):
        self.writes = []
        self.pending = []
        self.closed = False
        self._fail = fail

    def write(self, data):
        self.writes.append(data)
        if self._fail:
            return defer.fail(OSError(28, "No space left on device"))
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def store_all(self):
        pending, self.pending = self.pending, []
        for d in pending:
            d.callback(None)

    def close(self):
        self.closed = True
        return defer.succeed(None)

    def abort(self):
        return defer.succeed(None)


def make_sink(writer):
    opened = defer.Deferred()

    async def opener():
        return await opened

    transport = Transport()
    sink = UploadSink(SimpleNamespace(channel=SimpleNamespace(transport=transport)), opener)
    return sink, transport, lambda: opened.callback(writer)


def test_whole_pieces_reach_storage_without_a_copy():
    writer = Writer()
    sink, transport, open_writer = make_sink(writer)
    open_writer()
    piece = bytes(CHUNK)
    sink.write(piece)
    assert transport.bufferSize == CHUNK
    assert writer.writes[0] is piece


def test_small_pieces_are_joined_into_chunks():
    writer = Writer()
    sink, _, open_writer = make_sink(writer)
    open_writer()
    for i in range(8):
        sink.write(bytes([i]) * (CHUNK // 4))
        writer.store_all()
    assert [len(w) for w in writer.writes] == [CHUNK, CHUNK]
    assert b"".join(writer.writes) == b"".join(bytes([i]) * (CHUNK // 4) for i in range(8))


def test_bytes_held_before_the_writer_opens_go_out_in_chunks_and_pause_the_client():
    writer = Writer()
    sink, transport, open_writer = make_sink(writer)
    sent = 0
    while not transport.paused:
        sink.write(b"x" * (CHUNK // 2))
        sent += CHUNK // 2
    assert HIGH_WATER < sent <= HIGH_WATER + CHUNK // 2
    open_writer()
    assert all(len(w) == CHUNK for w in writer.writes[:-1]) and len(writer.writes) > 1
    assert sum(len(w) for w in writer.writes) == sent
    assert transport.paused   # nothing stored yet
    writer.store_all()
    assert not transport.paused
    d = defer.ensureDeferred(sink.finish())
    assert d.result is writer and writer.closed


def test_paused_above_high_water_until_below_low_water():
    writer = Writer()
    sink, transport, open_writer = make_sink(writer)
    open_writer()
    while not transport.paused:
        sink.write(bytes(CHUNK))
    stored = 0
    for d in list(writer.pending):
        writer.pending.remove(d)
        d.callback(None)
        stored += CHUNK
        if not transport.paused:
            break
    assert len(writer.writes) * CHUNK - stored < LOW_WATER


def test_a_failed_write_stops_the_flush_and_is_raised_by_finish():
    writer = Writer(fail=True)
    sink, _, open_writer = make_sink(writer)
    for _ in range(4):
        sink.write(bytes(CHUNK))
    open_writer()
    assert len(writer.writes) == 1
    d = defer.ensureDeferred(sink.finish())
    assert isinstance(d.result.value, OSError)
    d.addErrback(lambda f: None)
