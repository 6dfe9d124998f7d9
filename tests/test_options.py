"""Option syntax: -chardev strings, the legacy -serial grammar and QAPI dicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2kchar.chardev.config import (
    FileConfig,
    InetAddress,
    MemoryConfig,
    MuxConfig,
    NullConfig,
    PipeConfig,
    PtyConfig,
    RingbufConfig,
    SerialConfig,
    SocketConfig,
    StdioConfig,
    UdpConfig,
    UnixAddress,
)
from e2kchar.chardev.types import ChardevError
from e2kchar.options import (
    ChardevSpec,
    from_qapi,
    parse_chardev,
    parse_legacy,
    parse_spec,
    split_opts,
    to_chardev_string,
    to_qapi,
)


def test_qemuopts_rules():
    assert split_opts("a,,b", implied="backend") == {"backend": "a,b"}
    opts = split_opts("file,path=x,,y,append,nowait,path=z", implied="backend")
    assert opts == {"backend": "file", "path": "z", "append": "on", "wait": "off"}


def test_chardev_basic_forms():
    spec = parse_chardev("ringbuf,id=r0,size=1k")
    assert spec == ChardevSpec("r0", RingbufConfig(size=1024), False)
    spec = parse_chardev("file,id=f,path=/tmp/a,,b,append=on,logfile=/tmp/l,logappend")
    assert spec.backend == FileConfig(out="/tmp/a,b", append=True, logfile="/tmp/l",
                                      logappend=True)
    assert parse_chardev("tty,id=t,path=/dev/ttyS0").backend == SerialConfig(device="/dev/ttyS0")
    assert parse_chardev("memory,id=m").backend == MemoryConfig()
    assert parse_chardev("stdio,id=s").backend == StdioConfig(signal=True)
    assert parse_chardev("stdio,id=s,mux=on").mux is True
    assert parse_chardev("mux,id=m,chardev=base").backend == MuxConfig(chardev="base")
    assert parse_chardev("pty,id=p,history=64k").backend == PtyConfig(history=65536)


def test_socket_cli_defaults():
    s = parse_chardev("socket,id=s,host=127.0.0.1,port=4444,server=on").backend
    assert s.server is True and s.wait is True  # CLI: servers wait
    s = parse_chardev("socket,id=s,host=127.0.0.1,port=4444,server,nowait,nodelay").backend
    assert s.server and s.wait is False and s.nodelay is True
    s = parse_chardev("socket,id=s,host=127.0.0.1,port=4444").backend
    assert s.server is False and s.wait is False
    s = parse_chardev("socket,id=s,path=/tmp/sock,server=on,wait=off").backend
    assert s.addr == UnixAddress(path="/tmp/sock")


def test_socket_qmp_defaults():
    cfg = from_qapi({"type": "socket", "data": {"addr": {"type": "inet", "data": {
        "host": "127.0.0.1", "port": "0"}}}})
    assert isinstance(cfg, SocketConfig) and cfg.server is True and cfg.wait is False


@pytest.mark.parametrize("text, message", [
    ("nosuch,id=x", "'nosuch' is not a valid char driver name"),
    ("file,id=x", "chardev: file: no filename given"),
    ("pipe,id=x", "chardev: pipe: no device path given"),
    ("serial,id=x", "chardev: serial/tty: no device path given"),
    ("socket,id=x,port=1", "chardev: socket: no host given"),
    ("socket,id=x,host=h", "chardev: socket: no port given"),
    ("udp,id=x", "chardev: udp: remote port not specified"),
    ("mux,id=x", "chardev: mux: no chardev given"),
    ("null", "chardev: no id specified"),
    ("null,id=1x", "Parameter 'id' expects an identifier"),
    ("null,id=x,bogus=1", "Invalid parameter 'bogus'"),
    ("null,id=x,nosuch", "Invalid parameter 'such'"),  # QemuOpts strips 'no' first
    ("ringbuf,id=x,size=abc", "Parameter 'size' expects a non-negative number below 2^64"),
    ("ringbuf,id=x,size=" + "9" * 400 + ".5k",
     "Parameter 'size' expects a non-negative number below 2^64"),
    ("socket,id=x,host=h,port=1,server=maybe", "Parameter 'server' expects 'on' or 'off'"),
    ("socket,id=x,host=h,port=1,reconnect=x", "Parameter 'reconnect' expects a number"),
    ("socket,id=x,path=/a,host=h", "Exactly one of 'path', 'fd' or 'host' required"),
    ("id=x", "chardev: \"x\" missing backend"),
])
def test_chardev_errors(text, message):
    with pytest.raises(ChardevError) as exc:
        parse_chardev(text)
    assert str(exc.value) == message


def test_legacy_grammar_in_qemu_order():
    assert parse_legacy("null", "serial0").backend == NullConfig()
    spec = parse_legacy("mon:stdio", "serial0")
    assert spec.mux and spec.backend == StdioConfig(signal=False)
    assert parse_legacy("file:/tmp/x", "s").backend == FileConfig(out="/tmp/x")
    assert parse_legacy("pipe:/tmp/p", "s").backend == PipeConfig(device="/tmp/p")
    tcp = parse_legacy("tcp:127.0.0.1:4444,server=on,wait=off", "s").backend
    assert tcp.addr == InetAddress(host="127.0.0.1", port="4444") and tcp.server and not tcp.wait
    tel = parse_legacy("telnet::4445,server,nowait", "s").backend
    assert tel.telnet is True and tel.addr.host == "" and tel.server
    # QEMU's order: prefix host/port, then the options (which may override), then the flag
    tel = parse_legacy("telnet:a:1,host=b,telnet=off", "s").backend
    assert tel.addr.host == "b" and tel.telnet is True
    udp = parse_legacy("udp:127.0.0.1:5555@:6666", "s").backend
    assert udp == UdpConfig(remote=InetAddress(host="127.0.0.1", port="5555"),
                            local=InetAddress(host="", port="6666"))
    assert parse_legacy("udp::5555", "s").backend.remote.host == "localhost"
    unix = parse_legacy("unix:/tmp/s,server=on,wait=off", "s").backend
    assert unix.addr == UnixAddress(path="/tmp/s") and unix.server and not unix.wait
    assert parse_legacy("/dev/ttyS1", "s").backend == SerialConfig(device="/dev/ttyS1")
    assert parse_legacy("pty", "s").backend == PtyConfig()
    assert parse_legacy("mon:tcp:127.0.0.1:1,server=on,wait=off", "s").mux
    for bad in ("bogus", "vc:80x24", "tcp:nohostport", "msmouse", "/dev/parport0"):
        with pytest.raises(ChardevError):
            parse_legacy(bad, "s")


def test_parse_spec_picks_the_grammar():
    assert parse_spec("ringbuf,size=128", "r").backend == RingbufConfig(size=128)
    assert parse_spec("file:/tmp/y", "f").backend == FileConfig(out="/tmp/y")
    assert parse_spec("null", "n").backend == NullConfig()
    with pytest.raises(ChardevError, match="Unexpected 'id' parameter"):
        parse_spec("null,id=other", "n")


def test_qapi_strictness():
    with pytest.raises(ChardevError, match=r"Parameter 'backend.data.bogus' is unexpected"):
        from_qapi({"type": "null", "data": {"bogus": 1}})
    with pytest.raises(ChardevError, match=r"Parameter 'backend.data.out' is missing"):
        from_qapi({"type": "file", "data": {}})
    with pytest.raises(ChardevError, match=r"Parameter 'backend.data' is missing"):
        from_qapi({"type": "file"})  # QEMU names the absent wrapper, not its member
    assert from_qapi({"type": "null"}) == from_qapi({"type": "null", "data": {}})  # lenient
    with pytest.raises(ChardevError,
                       match=r"Invalid parameter type for 'backend.data.size', expected: integer"):
        from_qapi({"type": "ringbuf", "data": {"size": "12"}})
    with pytest.raises(ChardevError, match="'zz' is not a valid char driver name"):
        from_qapi({"type": "zz", "data": {}})
    with pytest.raises(ChardevError):
        from_qapi("ringbuf")
    assert from_qapi({"type": "file", "data": {"out": "/o", "in": "/i"}}) == \
        FileConfig(out="/o", in_="/i")


def test_qapi_round_trip():
    cfg = from_qapi({"type": "udp", "data": {
        "remote": {"type": "inet", "data": {"host": "localhost", "port": "9"}},
        "local": {"type": "inet", "data": {"host": "", "port": "0"}}}})
    assert from_qapi(to_qapi(cfg)) == cfg


# -- property tests ------------------------------------------------------------------------

_value = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_key = st.sampled_from(["path", "size", "host", "port", "server", "wait", "append", "mux",
                        "logfile", "logappend", "signal", "chardev", "history", "reconnect",
                        "telnet", "nodelay", "input-path", "localport", "bogus", "id"])
_backend = st.sampled_from(["null", "file", "pipe", "serial", "tty", "stdio", "ringbuf",
                            "memory", "mux", "pty", "socket", "udp", "testdev", "nope", ""])


@st.composite
def chardev_strings(draw):
    parts = [draw(_backend), "id=" + draw(st.sampled_from(["a", "b_1", "x.y", "9", ""]))]
    for _ in range(draw(st.integers(0, 6))):
        key = draw(_key)
        if draw(st.booleans()):
            parts.append(key)
        else:
            value = draw(st.one_of(_value, st.sampled_from(["on", "off", "1k", "4096", "0",
                                                             "9" * 400 + ".5k", "1.5E"])))
            parts.append(f"{key}={value.replace(',', ',,')}")
    return ",".join(parts)


@settings(max_examples=400, deadline=None)
@given(chardev_strings())
def test_chardev_parser_only_raises_chardev_error_and_round_trips(text):
    try:
        spec = parse_chardev(text)
    except ChardevError:
        return
    again = parse_chardev(to_chardev_string(spec))
    assert again == spec
    assert from_qapi(to_qapi(spec.backend)) == spec.backend


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_any_text_only_raises_chardev_error(text):
    for fn in (parse_chardev, lambda t: parse_legacy(t, "s"), lambda t: parse_spec(t, "s")):
        try:
            fn(text)
        except ChardevError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=5),
                 st.dictionaries(st.sampled_from(["type", "data", "x"]),
                                 st.one_of(st.text(max_size=8), st.integers(),
                                           st.dictionaries(st.sampled_from(
                                               ["out", "size", "device", "addr", "chardev",
                                                "server", "in", "q"]),
                                               st.one_of(st.text(max_size=6), st.integers(),
                                                         st.booleans(), st.none()))))))
def test_qapi_reader_only_raises_chardev_error(obj):
    try:
        cfg = from_qapi(obj)
    except ChardevError:
        return
    assert from_qapi(to_qapi(cfg)) == cfg


_legacy_prefix = st.sampled_from(["", "mon:", "file:", "pipe:", "tcp:", "telnet:", "tn3270:",
                                  "websocket:", "udp:", "unix:", "/dev/", "null", "pty",
                                  "stdio", "testdev", "vc", "COM"])


@settings(max_examples=600, deadline=None)
@given(_legacy_prefix, _legacy_prefix, st.text(alphabet="ab1:,@=/.x", max_size=12))
def test_legacy_parser_only_raises_chardev_error_and_round_trips(p1, p2, rest):
    """Whatever the -serial grammar accepts has one -chardev and one QAPI spelling."""
    try:
        spec = parse_legacy(p1 + p2 + rest, "s")
    except ChardevError:
        return
    assert parse_chardev(to_chardev_string(spec)) == spec
    assert from_qapi(to_qapi(spec.backend)) == spec.backend


def test_the_declared_key_table_is_the_union_of_the_backends_tables():
    """spec.KEYS is declared (so parsing loads no backend); it must equal what the
    backends' own tables say, kind for kind, and every table must open its own type."""
    from e2kchar.chardev import spec

    spec.check_tables()
    assert list(spec.BACKENDS) == ["null", "file", "pipe", "stdio", "ringbuf", "memory",
                                   "mux", "testdev", "socket", "udp", "pty", "serial",
                                   "rfc2217", "hub"]
