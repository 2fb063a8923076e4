"""The client over TLS: a keep-alive connection the server closed while idle is stale, as it is
over plain HTTP (there the close shows as RemoteDisconnected, here as the TLS layer's EOF), so a
write is sent again on a new connection instead of failing as "outcome unknown"."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from konsul.client import Client
from tests.certs import CertDir

BODY = b'{"key": "k", "value": "v", "modify_index": 1}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


def serve(listener: ssl.SSLSocket, connections: int, requests: list[bytes]) -> None:
    """Answer one request per connection, then drop the TCP connection without a TLS
    close_notify, as a node whose pod is deleted does."""
    for _ in range(connections):
        conn, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        requests.append(head.split(b"\r\n")[0])
        conn.sendall(ANSWER)
        conn.shutdown(socket.SHUT_RDWR)   # TCP FIN, no close_notify
        conn.close()


def test_a_write_on_an_idle_tls_connection_the_server_dropped_goes_on_a_new_one(
        tmp_path: Path) -> None:
    certs = CertDir(tmp_path / "tls")
    cert, key = certs.member("node", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    raw = socket.create_server(("127.0.0.1", 0))
    listener = context.wrap_socket(raw, server_side=True)
    port = listener.getsockname()[1]
    requests: list[bytes] = []
    server = threading.Thread(target=serve, args=(listener, 2, requests), daemon=True)
    server.start()
    try:
        with Client(f"https://127.0.0.1:{port}", ca_file=str(certs.ca_file), retries=0) as client:
            client.kv_put("k", "v")
            client.kv_put("k", "v")   # the first connection is gone: a new one, no error
        server.join(10)
        assert requests == [b"PUT /kv/k HTTP/1.1"] * 2
    finally:
        listener.close()
