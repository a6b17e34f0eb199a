"""A TCP relay from a namespace's loopback to ours:  python fieldday_relay.py NETNS LISTEN_PORT TARGET_PORT

The listening socket is made inside NETNS (setns(2) for the moment of its creation; a socket keeps
the namespace it was made in); every connection is forwarded to 127.0.0.1:TARGET_PORT here."""
import ctypes
import os
import socket
import sys
import threading

from tls_front import pipe  # the same byte relay (this file runs as a script from tests/e2e/)

CLONE_NEWNET = 0x40000000


def listen_in(netns: str, port: int) -> socket.socket:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    if libc.setns(there, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    try:
        srv = socket.create_server(("127.0.0.1", port), backlog=64)
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(home)
        os.close(there)
    return srv


def main() -> None:
    netns, port, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    srv = listen_in(netns, port)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            up = socket.create_connection(("127.0.0.1", target), timeout=10)
        except OSError:
            conn.close()
            continue
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    main()
