"""A minimal HTTPS front for the namespace tests: TLS on ADDR:PORT, bytes relayed to 127.0.0.1:BACKEND.

    python tls_front.py ADDR PORT BACKEND CERT KEY

Stands in for the TLS front a deployment puts before the portal (FAS level 3 needs HTTPS).
Prints "ready" once listening; stops on SIGTERM.
"""
import socket
import ssl
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, context, backend):
    try:
        conn.settimeout(30)
        tls = context.wrap_socket(conn, server_side=True)
        tls.settimeout(None)
        upstream = socket.create_connection(("127.0.0.1", backend), timeout=10)
        upstream.settimeout(None)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    threading.Thread(target=pipe, args=(upstream, tls), daemon=True).start()
    pipe(tls, upstream)


def main(addr, port, backend, cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((addr, int(port)), reuse_port=False)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, context, int(backend)), daemon=True).start()


if __name__ == "__main__":
    main(*sys.argv[1:6])
