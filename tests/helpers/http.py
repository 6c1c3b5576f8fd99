"""Raw HTTP helpers shared by several test modules: a client that stalls mid-upload, reading a socket to
its end, and one value out of a Prometheus /metrics text."""

from __future__ import annotations

import re
import socket


def stalled_upload(url: str, declared: int = 200_000) -> socket.socket:
    """A client that is admitted (headers + a few body bytes) and then stops sending."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        + f"Content-Length: {declared}\r\n\r\n".encode()
        + b"\xff\xd8\xff\xe0"
    )
    return s


def read_all(s: socket.socket) -> str:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of samples of `name` whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total
