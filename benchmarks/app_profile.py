"""Instructions per HTTP request of real servers, and where they go, per event loop.

    python benchmarks/app_profile.py                       # totals, every server x loop
    python benchmarks/app_profile.py --top 40              # and the per-function profile
    python benchmarks/app_profile.py --servers uvicorn --loops uvloop,zerosock --top 30
    python benchmarks/app_profile.py --calls               # Python-level calls per request
    python benchmarks/app_profile.py --tls --servers aiohttp \
        --loops asyncio,uvloop,zerosock,uvloop+aiofastnet  # over TLS; a loop patched by aiofastnet

The whole server process runs under callgrind (``--dump-instr=no``) as a user
deploys it: uvicorn with httptools serving a bare ASGI hello world, or an
aiohttp hello world, on stock asyncio, uvloop or zerosock.aio.  A bounded
keep-alive HTTP/1.1 client (this script, outside valgrind) sends exactly N
requests over C connections, reads every answer, closes, and stops the server
with SIGINT (which it handles as a graceful shut-down).  Two
runs of different N are differenced, so start-up, imports and shut-down
cancel: instructions per request = (I(long) - I(short)) / (long - short), and
the same for every function (self cost, calls) of the callgrind profiles.

``--tls`` serves HTTPS (TLS 1.3, a certificate from a throwaway trustme CA) and
the client speaks TLS, handshakes included in both runs so that they cancel.
A loop named ``NAME+aiofastnet`` is NAME's loop patched by
``aiofastnet.patch_loop``, whose ``create_server`` then makes aiofastnet's
transports and TLS (aiohttp 3.14 and uvicorn use it only that way).

``--calls`` counts, with ``sys.setprofile`` and no valgrind, the Python-level
calls per request (Python functions and builtins called from Python code):
what callgrind cannot name inside the interpreter's eval loop.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

SERVERS = ("uvicorn", "aiohttp")
LOOPS = ("asyncio", "uvloop", "zerosock")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
WARMUP_REQUESTS = 64
# Set (to "certfile:keyfile:cafile") for the server and client to speak TLS.
TLS_ENV = "APP_PROFILE_TLS"


# -- the server (child process) -------------------------------------------------

def _new_loop(name: str):  # type: ignore[no-untyped-def]
    if name.endswith("+aiofastnet"):
        import aiofastnet
        return aiofastnet.patch_loop(_new_loop(name[:-len("+aiofastnet")]))
    if name == "asyncio":
        import asyncio
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    from zerosock import _compat
    if _compat.BACKEND != "c":
        raise SystemExit("zerosock's C backend is not built")
    from zerosock import aio
    return aio.new_event_loop()


def _serve_uvicorn(loop, sock: socket.socket, count: int) -> None:  # type: ignore[no-untyped-def]
    import uvicorn
    print(sock.getsockname()[1], flush=True)  # accepted from now on (the backlog holds them)
    served = 0

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        nonlocal served
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", b"13")]})
        await send({"type": "http.response.body", "body": b"Hello, world!"})
        served += 1

    tls = _tls_files()
    config = uvicorn.Config(app, loop="none", http="httptools", ws="none", lifespan="off",
                            access_log=False, log_level="warning",
                            ssl_certfile=tls[0] if tls else None,
                            ssl_keyfile=tls[1] if tls else None)
    server = uvicorn.Server(config)
    try:
        loop.run_until_complete(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the SIGINT that stopped it, once shut down
    _check_served(served, count + WARMUP_REQUESTS)


def _serve_aiohttp(loop, sock: socket.socket, count: int) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    from aiohttp import web
    served = 0
    done = asyncio.Event()

    async def hello(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        return web.Response(text="Hello, world!")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tls = _tls_files()
        context = None
        if tls:
            import ssl
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls[0], tls[1])
        await web.SockSite(runner, sock, ssl_context=context).start()
        loop.add_signal_handler(signal.SIGINT, done.set)
        print(sock.getsockname()[1], flush=True)
        await done.wait()
        await runner.cleanup()

    loop.run_until_complete(main())
    _check_served(served, count + WARMUP_REQUESTS)


def _tls_files() -> Optional[List[str]]:
    value = os.environ.get(TLS_ENV)
    return value.split(":") if value else None


def _check_served(served: int, count: int) -> None:
    if served != count:
        raise SystemExit(f"served {served} requests, expected {count}")


def _count_calls():  # type: ignore[no-untyped-def]
    """A profile hook counting Python-level calls by function, and the dump at exit."""
    counts: Dict[str, int] = collections.Counter()

    def hook(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call":
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            counts[f"{os.path.basename(code.co_filename)}:{name}"] += 1
        elif event == "c_call":
            owner = getattr(arg, "__self__", None)
            kind = type(owner).__name__ if owner is not None else "builtin"
            counts[f"<C> {kind}.{arg.__name__}"] += 1

    def dump(path: str) -> None:
        sys.setprofile(None)
        with open(path, "w") as f:
            for name, n in counts.items():
                f.write(f"{n}\t{name}\n")

    return hook, dump


def serve(server: str, loop_name: str, count: int, calls_out: Optional[str]) -> None:
    import asyncio
    loop = _new_loop(loop_name)
    asyncio.set_event_loop(loop)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    dump = None
    if calls_out:
        hook, dump = _count_calls()
        sys.setprofile(hook)
    try:
        (_serve_uvicorn if server == "uvicorn" else _serve_aiohttp)(loop, sock, count)
    finally:
        if dump is not None:
            dump(calls_out)  # type: ignore[arg-type]
        loop.close()


# -- the client (this process) ------------------------------------------------------

def drive(port: int, total: int, connections: int, timeout: float = 900.0) -> None:
    """Send exactly ``total`` keep-alive requests over ``connections`` sockets, one
    outstanding per socket, each answer read in full (by its Content-Length)."""
    sel = selectors.DefaultSelector()
    issued = answered = 0
    buffers: Dict[socket.socket, bytearray] = {}
    tls = _tls_files()
    context = None
    if tls:
        import ssl
        context = ssl.create_default_context(cafile=tls[2])
    for _ in range(min(connections, total)):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            s = context.wrap_socket(s, server_hostname="localhost")  # handshakes, blocking
        s.setblocking(False)
        buffers[s] = bytearray()
        sel.register(s, selectors.EVENT_READ)
        s.sendall(REQUEST)
        issued += 1
    deadline = time.monotonic() + timeout
    while answered < total:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {answered} of {total} answers")
        for key, _ in sel.select(1.0):
            s = key.fileobj
            data = _recv_all(s)
            if data is None:
                continue  # a TLS record still incomplete
            if not data:
                raise RuntimeError(f"the server closed a connection after {answered} answers")
            buf = buffers[s]
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", buf[:end]).group(1))
                if len(buf) < end + 4 + length:
                    break
                del buf[:end + 4 + length]
                answered += 1
                if issued < total:
                    s.sendall(REQUEST)
                    issued += 1
    for s in buffers:
        sel.unregister(s)
        s.close()


def _recv_all(s: socket.socket) -> Optional[bytes]:
    """What the socket has now: b"" at its end, None when a TLS socket has
    no whole record yet.  A TLS socket is read until it would block, as the
    selector does not see what its TLS layer holds already decrypted."""
    import ssl
    if not isinstance(s, ssl.SSLSocket):
        return s.recv(65536)
    parts = []
    while True:
        try:
            data = s.recv(65536)
        except ssl.SSLWantReadError:
            break
        if not data:
            return b"".join(parts)
        parts.append(data)
    return b"".join(parts) if parts else None


def run_server(server: str, loop_name: str, count: int, connections: int,
               tool: List[str], calls_out: Optional[str] = None) -> None:
    cmd = tool + [sys.executable, os.path.abspath(__file__), "--serve", server, loop_name,
                  str(count)]
    if calls_out:
        cmd.append(calls_out)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError(f"{server}/{loop_name} did not start:\n"
                               + proc.communicate(timeout=60)[1].decode()[-3000:])
        # One connection first, as the bench tool's HTTP runs start (see
        # HTTP_WARMUP_REQUESTS there): the steady state, not the start-up race.
        drive(int(line), WARMUP_REQUESTS, 1)
        drive(int(line), count, connections)
        proc.send_signal(signal.SIGINT)  # every answer is in: the server shuts down
        _, err = proc.communicate(timeout=600)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"{server}/{loop_name} failed:\n{err.decode()[-3000:]}")


# -- callgrind output ------------------------------------------------------------------

Profile = Dict[Tuple[str, str], List[int]]  # (object, function) -> [self Ir, calls in]


def read_callgrind(path: str) -> Tuple[int, Profile]:
    """Total Ir, and per function its self cost and the calls made to it."""
    names: Dict[str, Dict[str, str]] = {"ob": {}, "fn": {}}
    profile: Profile = collections.defaultdict(lambda: [0, 0])
    total = 0
    ob = fn = cob = cfn = ""
    after_calls = False

    def name(kind: str, text: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2) is not None:
            # f'2 is f at recursion depth 2: the same function.
            names[kind][m.group(1)] = re.sub(r"'\d+$", "", m.group(2))
        return names[kind].get(m.group(1), text)

    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                continue
            if line[0].isdigit() or line[0] in "+-*":
                if after_calls:
                    after_calls = False  # the call's inclusive cost: not self cost
                    continue
                parts = line.split()
                if len(parts) > 1:
                    profile[(ob, fn)][0] += int(parts[1])
                continue
            key, _, value = line.rstrip("\n").partition("=")
            if key == "ob":
                ob = cob = name("ob", value)
            elif key == "fn":
                fn = name("fn", value)
                cob = ob
            elif key == "cob":
                cob = name("ob", value)
            elif key == "cfn":
                cfn = name("fn", value)
            elif key == "calls":
                profile[(cob, cfn)][1] += int(value.split()[0])
                cob = ob
                after_calls = True
    return total, profile


def callgrind_run(server: str, loop_name: str, count: int, connections: int,
                  outdir: str, reuse: bool) -> Tuple[int, Profile]:
    out = os.path.join(outdir, f"{server}-{loop_name}-{count}.out")
    if not reuse:
        run_server(server, loop_name, count, connections,
                   ["valgrind", "--tool=callgrind", "--dump-instr=no", "--compress-pos=no",
                    f"--callgrind-out-file={out}"])
    return read_callgrind(out)


def short_object(path: str) -> str:
    base = os.path.basename(path)
    return re.sub(r"\.cpython-.*\.so$|\.so(\.[\d.]+)?$", "", base)


def diff_profiles(short: Profile, long: Profile, requests: int) -> Dict[Tuple[str, str], Tuple[float, float]]:
    out = {}
    for key in set(short) | set(long):
        s = short.get(key, [0, 0])
        lg = long.get(key, [0, 0])
        out[key] = ((lg[0] - s[0]) / requests, (lg[1] - s[1]) / requests)
    return out


def measure(args: argparse.Namespace) -> None:
    outdir = args.reuse or args.keep or tempfile.mkdtemp(prefix="app-profile-")
    os.makedirs(outdir, exist_ok=True)
    results: Dict[Tuple[str, str], float] = {}
    profiles: Dict[Tuple[str, str], Dict[Tuple[str, str], Tuple[float, float]]] = {}
    n = args.long - args.short
    for server in args.servers.split(","):
        for loop_name in args.loops.split(","):
            t_short, p_short = callgrind_run(server, loop_name, args.short, args.connections, outdir,
                                             bool(args.reuse))
            t_long, p_long = callgrind_run(server, loop_name, args.long, args.connections, outdir,
                                           bool(args.reuse))
            results[(server, loop_name)] = (t_long - t_short) / n
            profiles[(server, loop_name)] = diff_profiles(p_short, p_long, n)
            print(f"{server:<8} {loop_name:<9} {results[(server, loop_name)]:10.0f} instructions/request",
                  flush=True)
    loops = args.loops.split(",")
    print()
    print("| server | " + " | ".join(loops) + (" | zerosock / uvloop |" if
                                                 {"uvloop", "zerosock"} <= set(loops) else " |"))
    print("|---|" + "--:|" * len(loops) + ("--:|" if {"uvloop", "zerosock"} <= set(loops) else ""))
    for server in args.servers.split(","):
        row = [f"{results[(server, lp)]:,.0f}" for lp in loops]
        if {"uvloop", "zerosock"} <= set(loops):
            row.append(f"{results[(server, 'zerosock')] / results[(server, 'uvloop')]:.2f}")
        print(f"| {server} | " + " | ".join(row) + " |")
    if args.top:
        for server in args.servers.split(","):
            by_object: Dict[Tuple[str, str], float] = collections.defaultdict(float)
            for loop_name in loops:
                for (ob, _), (cost, _) in profiles[(server, loop_name)].items():
                    by_object[(short_object(ob), loop_name)] += cost
            print(f"\n{server}: instructions/request by object")
            objects = sorted({o for o, _ in by_object}, key=lambda o: -max(by_object[(o, lp)] for lp in loops))
            print(f"{'object':<40}" + "".join(f"{lp:>12}" for lp in loops))
            for o in objects[:15]:
                print(f"{o[:40]:<40}" + "".join(f"{by_object[(o, lp)]:12.0f}" for lp in loops))
            for loop_name in loops:
                prof = profiles[(server, loop_name)]
                ranked = sorted(prof.items(), key=lambda kv: -kv[1][0])[:args.top]
                print(f"\n{server} on {loop_name}: top functions by self instructions/request")
                print(f"{'self Ir/req':>11} {'calls/req':>9}  function (object)")
                for (ob, fn), (cost, calls) in ranked:
                    print(f"{cost:11.0f} {calls:9.2f}  {fn[:90]} ({short_object(ob)})")
    if not (args.keep or args.reuse):
        shutil.rmtree(outdir, ignore_errors=True)


def count_calls(args: argparse.Namespace) -> None:
    n = args.long - args.short
    with tempfile.TemporaryDirectory() as tmp:
        for server in args.servers.split(","):
            per_loop = {}
            for loop_name in args.loops.split(","):
                runs = []
                for count in (args.short, args.long):
                    path = os.path.join(tmp, f"{server}-{loop_name}-{count}.calls")
                    run_server(server, loop_name, count, args.connections, [], path)
                    with open(path) as f:
                        runs.append({name: int(c) for c, name in
                                     (line.rstrip("\n").split("\t", 1) for line in f)})
                per_loop[loop_name] = {k: (runs[1].get(k, 0) - runs[0].get(k, 0)) / n
                                       for k in set(runs[0]) | set(runs[1])}
            loops = list(per_loop)
            names = sorted({k for d in per_loop.values() for k, v in d.items() if v >= 0.5},
                           key=lambda k: -max(d.get(k, 0) for d in per_loop.values()))
            print(f"\n{server}: Python-level calls per request")
            print("".join(f"{lp:>10}" for lp in loops) + "  function")
            for k in names[:args.top or 60]:
                print("".join(f"{per_loop[lp].get(k, 0):10.2f}" for lp in loops) + f"  {k}")


def _make_certificate() -> None:
    """A localhost certificate from a throwaway CA, named in TLS_ENV for the server and client."""
    import trustme
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    tmp = tempfile.mkdtemp(prefix="app-profile-tls-")
    files = [os.path.join(tmp, name) for name in ("cert.pem", "key.pem", "ca.pem")]
    cert.cert_chain_pems[0].write_to_path(files[0])
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(files[0], append=True)
    cert.private_key_pem.write_to_path(files[1])
    ca.cert_pem.write_to_path(files[2])
    os.environ[TLS_ENV] = ":".join(files)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--loops", default=",".join(LOOPS))
    parser.add_argument("--short", type=int, default=2000)
    parser.add_argument("--long", type=int, default=10000)
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("--top", type=int, default=0, help="functions to list per server and loop")
    parser.add_argument("--calls", action="store_true",
                        help="Python-level calls per request (sys.setprofile), no valgrind")
    parser.add_argument("--tls", action="store_true", help="serve and request over TLS 1.3")
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind outputs in DIR")
    parser.add_argument("--reuse", metavar="DIR",
                        help="analyse the callgrind outputs a --keep run left in DIR, run nothing")
    args = parser.parse_args()
    if args.tls:
        _make_certificate()
    if args.calls:
        count_calls(args)
        return
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed")
    measure(args)


if __name__ == "__main__":
    main()
