#!/usr/bin/env python3
"""The gevent twin of the server benchmark (`cargo xtask bench --servers`): the
servers of crates/coro/examples/coro_servers.rs, written as a gevent user would,
with gevent's StreamServer.

Usage: python3 servers.py <echo|http>
Prints the port on the first line of stdout and serves on 127.0.0.1 until stdin
closes. Echo: reads 1 KiB, writes it back, until the client closes. http:
answers each keep-alive request with a 200 and a 13-byte body. Listens with
the same backlog as the Rust servers (the system's largest), so the
comparison is about serving, not about dropped SYNs. Needs gevent; exits 3
with a note on stderr without it.
"""
import resource
import sys

try:
    from gevent.server import StreamServer
except ImportError:
    print("gevent is not installed (pip install gevent)", file=sys.stderr)
    sys.exit(3)
import gevent

MSG = 1024
BODY = b"Hello, World!"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
          % len(BODY)) + BODY


def read_exactly(sock, n):
    """n bytes from sock, or None once the peer has closed."""
    chunks, have = [], 0
    while have < n:
        got = sock.recv(n - have)
        if not got:
            return None
        chunks.append(got)
        have += len(got)
    return b"".join(chunks)


def echo(sock, _addr):
    while True:
        msg = read_exactly(sock, MSG)
        if msg is None:
            return
        sock.sendall(msg)


def http(sock, _addr):
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            sock.sendall(ANSWER)
            buf = buf[end + 4:]
            continue
        got = sock.recv(4096)
        if not got:
            return
        buf += got


def max_backlog():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4096


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("echo", "http"):
        sys.exit(__doc__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    handler = echo if sys.argv[1] == "echo" else http
    server = StreamServer(("127.0.0.1", 0), handler, backlog=max_backlog())
    server.start()
    print(server.address[1], flush=True)
    # Wait for stdin to close without blocking the hub.
    from gevent.os import make_nonblocking, nb_read
    make_nonblocking(sys.stdin.fileno())
    while nb_read(sys.stdin.fileno(), 4096):
        pass
    server.stop(timeout=1)


if __name__ == "__main__":
    main()
