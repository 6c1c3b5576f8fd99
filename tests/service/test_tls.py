"""HTTPS for phones (service/tls.py): the self-signed certificate made once for this machine's names and
LAN addresses, reused while it covers them; your own certificate from settings; the start banner."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from pydantic import ValidationError

from service.settings import Settings
from service.tls import banner, certificate_names, ensure_self_signed, lan_addresses, server_tls
from tests.conftest import REPO_ROOT, free_port


def _san(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }


def test_self_signed_is_made_once_for_the_lan_addresses(tmp_path: Path) -> None:
    settings = Settings(tls="self-signed", tls_dir=tmp_path / "tls", host="0.0.0.0")  # noqa: S104
    first = server_tls(settings)
    assert first is not None and first.self_signed
    names, ips = _san(first.certfile)
    assert {"localhost"} <= names and {"127.0.0.1", *lan_addresses()} <= ips
    # the key is for this user only
    assert stat.S_IMODE(first.keyfile.stat().st_mode) == 0o600
    # a second start reuses it: the phone accepted this one already
    again = server_tls(settings)
    assert again is not None and again.fingerprint == first.fingerprint
    # a new address (the laptop moved to another network): a new certificate that names it
    moved = server_tls(settings.model_copy(update={"tls_hosts": ["192.0.2.77", "laptop.lan"]}))
    assert moved is not None and moved.fingerprint != first.fingerprint
    names, ips = _san(moved.certfile)
    assert "192.0.2.77" in ips and "laptop.lan" in names


def test_the_certificate_works_for_an_https_client(tmp_path: Path) -> None:
    files = ensure_self_signed(tmp_path, *certificate_names("127.0.0.1"))
    ctx = ssl.create_default_context(cafile=str(files.certfile))
    ctx.load_cert_chain(files.certfile, files.keyfile)  # the key belongs to the certificate


def test_plain_http_by_default_and_own_files_need_both(tmp_path: Path) -> None:
    assert server_tls(Settings()) is None
    with pytest.raises(ValidationError, match="both or neither"):
        Settings(tls_certfile=tmp_path / "cert.pem")


def test_own_certificate_wins(tmp_path: Path) -> None:
    own = ensure_self_signed(tmp_path / "own", ["my.host"], [])
    settings = Settings(
        tls="self-signed", tls_dir=tmp_path / "unused", tls_certfile=own.certfile, tls_keyfile=own.keyfile
    )
    files = server_tls(settings)
    assert files is not None and files.certfile == own.certfile and not files.self_signed
    assert not (tmp_path / "unused").exists()


def test_banner_prints_lan_urls_and_a_qr_code(tmp_path: Path) -> None:
    settings = Settings(tls="self-signed", tls_dir=tmp_path, host="0.0.0.0", port=8443)  # noqa: S104
    text = banner(settings, server_tls(settings))
    for address in lan_addresses():
        assert f"https://{address}:8443/" in text
    assert "SHA-256" in text and "accept it" in text
    if lan_addresses():
        assert "█" in text  # the QR code, in block characters
    loopback = banner(Settings(host="127.0.0.1"), None)
    assert "a phone cannot reach it" in loopback and "█" not in loopback


def test_the_service_answers_over_https(tmp_path: Path, models_dir: Path, detector_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "MASKLITE_HOST": "127.0.0.1",
        "MASKLITE_PORT": str(port),
        "MASKLITE_TLS": "self-signed",
        "MASKLITE_TLS_DIR": str(tmp_path / "tls"),
        "MASKLITE_JOBS_DIR": str(tmp_path / "jobs"),
        "MASKLITE_MODELS_DIR": str(models_dir),
        "MASKLITE_DETECTOR_PATH": str(detector_path),
        "MASKLITE_WARMUP_RUNS": "0",
    }
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    try:
        cert = tmp_path / "tls" / "masklite-cert.pem"
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(
                    f"https://127.0.0.1:{port}/health/live",
                    verify=ssl.create_default_context(cafile=cert),
                    timeout=5,
                )
                break
            except (httpx.TransportError, FileNotFoundError):
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, log.read_text()[-3000:]
        assert "https://localhost:" in log.read_text()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5)  # no plain HTTP beside it
    finally:
        proc.terminate()
        proc.wait(timeout=20)
