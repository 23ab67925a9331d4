"""User-space instructions per TLS echo request of the server process.

    python benchmarks/tls_echo.py [--sizes 256,8192] [--conns 10] [--servers zerosock,uvloop,asyncio]

Each server (an ``asyncio.Protocol`` echo over TLS 1.3 on one loop) runs under
callgrind; the load generator is a separate uvloop TLS client that callgrind
does not see.  A figure is the difference of two runs of different request
counts divided by the difference in requests, so start-up and handshakes
cancel.  Needs valgrind and trustme; uvloop and aiofastnet contenders are
skipped when not installed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap

SERVERS = {
    "zerosock": "import zerosock.aio; new_loop = zerosock.aio.new_event_loop",
    "zerosock-memorybio": "import os; os.environ['ZEROSOCK_TLS_ENGINE'] = 'memorybio'\n"
                          "import zerosock.aio; new_loop = zerosock.aio.new_event_loop",
    "zerosock-stdlib-tls": "import os; os.environ['ZEROSOCK_TLS_ENGINE'] = 'stdlib'\n"
                           "import zerosock.aio; new_loop = zerosock.aio.new_event_loop",
    "asyncio": "import asyncio; new_loop = asyncio.new_event_loop",
    "uvloop": "import uvloop; new_loop = uvloop.new_event_loop",
    "uvloop+aiofastnet": "import uvloop, aiofastnet\n"
                         "new_loop = lambda: aiofastnet.patch_loop(uvloop.new_event_loop())",
    "asyncio+aiofastnet": "import asyncio, aiofastnet\n"
                          "new_loop = lambda: aiofastnet.patch_loop(asyncio.new_event_loop())",
    "zerosock+aiofastnet": "import zerosock.aio, aiofastnet\n"
                           "new_loop = lambda: aiofastnet.patch_loop(zerosock.aio.new_event_loop())",
}

SERVER = """
import asyncio, ssl, sys
{setup}
cert, key, conns = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_cert_chain(cert, key)
loop = new_loop()
asyncio.set_event_loop(loop)
done = loop.create_future()
lost = 0

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
    def connection_lost(self, exc):
        global lost
        lost += 1
        if lost == conns and not done.done():
            done.set_result(None)

server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0, ssl=ctx))
print(server.sockets[0].getsockname()[1], flush=True)
loop.run_until_complete(done)
server.close()
loop.run_until_complete(server.wait_closed())
loop.close()
"""

CLIENT = """
import asyncio, ssl, sys, uvloop
port, cafile = int(sys.argv[1]), sys.argv[2]
size, conns, requests = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)
payload = b"x" * size

async def one(n):
    # A server under callgrind takes its time over a hundred handshakes.
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   server_hostname="localhost",
                                                   ssl_handshake_timeout=600)
    for _ in range(n):
        writer.write(payload)
        await reader.readexactly(size)
    writer.close()
    await writer.wait_closed()

async def main():
    share = [requests // conns + (i < requests % conns) for i in range(conns)]
    await asyncio.gather(*(one(n) for n in share))

uvloop.run(main())
"""


def run_once(server: str, files: dict, size: int, conns: int, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        srv_path = os.path.join(tmp, "server.py")
        cli_path = os.path.join(tmp, "client.py")
        with open(srv_path, "w") as f:
            f.write(SERVER.format(setup=SERVERS[server]))
        with open(cli_path, "w") as f:
            f.write(CLIENT)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, srv_path, files["cert"], files["key"], str(conns)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            port = proc.stdout.readline().strip()
            if not port:
                raise RuntimeError(proc.stderr.read()[-2000:])
            subprocess.run([sys.executable, cli_path, port, files["cert"], str(size), str(conns),
                            str(requests)], check=True, timeout=900, env=env)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    match = re.search(r"Collected : (\d+)", err)
    if not match:
        raise RuntimeError("no count from callgrind:\n" + err[-2000:])
    return int(match.group(1))


def available(server: str) -> bool:
    probe = SERVERS[server].replace("new_loop = ", "_ = ")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="zerosock,uvloop,asyncio,uvloop+aiofastnet")
    parser.add_argument("--sizes", default="256,8192")
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--short", type=int, default=1000)
    parser.add_argument("--long", type=int, default=5000)
    args = parser.parse_args()
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"cert": os.path.join(tmp, "cert.pem"), "key": os.path.join(tmp, "key.pem")}
        cert.private_key_pem.write_to_path(files["key"])
        # The chain file doubles as the client's trust store: leaf then CA.
        with open(files["cert"], "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
            f.write(ca.cert_pem.bytes())
        print(f"{'server':<22}" + "".join(f"{size:>10} B" for size in map(int, args.sizes.split(","))))
        for server in args.servers.split(","):
            if not available(server):
                print(f"{server:<22}  (not installed: skipped)")
                continue
            cells = []
            for size in map(int, args.sizes.split(",")):
                short = run_once(server, files, size, args.conns, args.short)
                long = run_once(server, files, size, args.conns, args.long)
                cells.append((long - short) / (args.long - args.short))
            print(f"{server:<22}" + "".join(f"{c:12,.0f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
