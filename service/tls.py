"""HTTPS for phones on the LAN: a browser gives a page camera access only over HTTPS (or on localhost).

`MASKLITE_TLS=self-signed` (`make serve-https`): a certificate for this machine's host name and LAN
addresses (plus localhost), made once with `cryptography` and kept in `MASKLITE_TLS_DIR` (default
data/tls/, gitignored; a compose volume in Docker). It is made again only when it no longer names every
current address or is about to expire. `MASKLITE_TLS_CERTFILE` + `MASKLITE_TLS_KEYFILE`: the user's own
certificate instead (one a phone already trusts: then the service worker, i.e. offline use, works too).
At start the LAN URLs are printed with a QR code (segno) that a phone's camera opens.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings

CERT_NAME, KEY_NAME = "masklite-cert.pem", "masklite-key.pem"
VALID_DAYS = 397  # what browsers accept for a leaf certificate
RENEW_DAYS = 30  # made again this close to expiry
# a UDP "connect" sends nothing: it only asks the kernel which local address routes to this one
ROUTE_PROBE = ("10.255.255.255", 1)
ANY_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 - names of "every interface", compared, not bound


@dataclass(frozen=True)
class TlsFiles:
    certfile: Path
    keyfile: Path
    self_signed: bool
    fingerprint: str  # SHA-256 of the certificate, to compare with what the phone shows


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback: the routed one first."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(ROUTE_PROBE)
            found.append(s.getsockname()[0])
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        found += [str(info[4][0]) for info in infos]
    except OSError:
        pass
    unique = dict.fromkeys(a for a in found if not ipaddress.ip_address(a).is_loopback)
    return list(unique)


def certificate_names(host: str) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate must cover for a server bound to `host`."""
    names = ["localhost", socket.gethostname()]
    ips = ["127.0.0.1", "::1"]
    if host in ANY_HOSTS:
        ips += lan_addresses()
    else:
        if _ip(host) is not None:
            ips.append(host)
        else:
            names.append(host)
    return list(dict.fromkeys(n for n in names if n)), list(dict.fromkeys(ips))


def server_tls(settings: Settings) -> TlsFiles | None:
    """The certificate and key uvicorn serves, or None for plain HTTP."""
    from cryptography import x509

    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        cert = x509.load_pem_x509_certificate(settings.tls_certfile.read_bytes())
        return TlsFiles(settings.tls_certfile, settings.tls_keyfile, False, _fingerprint(cert))
    if settings.tls != "self-signed":
        return None
    names, ips = certificate_names(settings.host)
    for extra in settings.tls_hosts:  # e.g. the Docker host's LAN address, which the container cannot see
        (ips if _ip(extra) is not None else names).append(extra)
    return ensure_self_signed(settings.tls_dir, names, ips)


def ensure_self_signed(folder: Path, names: list[str], ips: list[str]) -> TlsFiles:
    """The certificate in `folder` when it still covers `names` and `ips`, else a new one (kept there)."""
    from cryptography import x509

    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if _covers(cert, names, ips):
            return TlsFiles(cert_path, key_path, True, _fingerprint(cert))
    cert = _make_certificate(folder, cert_path, key_path, names, ips)
    return TlsFiles(cert_path, key_path, True, _fingerprint(cert))


def _covers(cert: object, names: list[str], ips: list[str]) -> bool:
    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return set(names) <= have_names and {str(ipaddress.ip_address(i)) for i in ips} <= have_ips


def _make_certificate(
    folder: Path, cert_path: Path, key_path: Path, names: list[str], ips: list[str]
) -> object:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"masklite on {socket.gethostname()}")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # the key is readable by this user only, written before the certificate that names it
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _fingerprint(cert: object) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    assert isinstance(cert, x509.Certificate)
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def lan_urls(settings: Settings, scheme: str) -> list[str]:
    """Where a phone on the same network opens the page ([] when bound to loopback only)."""
    host = settings.host
    if host in ANY_HOSTS:
        hosts = lan_addresses()
    elif host == "localhost" or (_ip(host) is not None and _ip(host).is_loopback):  # type: ignore[union-attr]
        hosts = []
    else:
        hosts = [f"[{host}]" if ":" in host else host]
    return [f"{scheme}://{h}:{settings.port}/" for h in hosts]


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def banner(settings: Settings, tls: TlsFiles | None) -> str:
    """What `python -m service` prints at start: the URLs, a QR code of the first LAN one, the steps."""
    import segno

    scheme = "https" if tls else "http"
    lines = [f"masklite: camera page at {scheme}://localhost:{settings.port}/"]
    urls = lan_urls(settings, scheme)
    if not urls:
        lines.append(
            f"  bound to {settings.host} only: a phone cannot reach it. Listen on the LAN with "
            "MASKLITE_HOST=0.0.0.0 (make serve-https does)."
        )
    for url in urls:
        lines.append(f"  on the LAN: {url}")
    if tls is not None:
        kind = "self-signed, " + str(tls.certfile) if tls.self_signed else str(tls.certfile)
        lines.append(f"  certificate ({kind}) SHA-256 {tls.fingerprint}")
        if tls.self_signed:
            lines.append(
                "  the phone warns once about this certificate: compare the fingerprint, then accept it "
                "(README.md, 'On a phone')."
            )
    elif urls:
        lines.append("  plain HTTP: a phone's browser gives no camera here; use MASKLITE_TLS=self-signed")
    if urls:
        qr = io.StringIO()
        segno.make(urls[0], error="l").terminal(out=qr, compact=True)
        lines.append(f"  scan with the phone's camera to open {urls[0]}")
        lines.append(qr.getvalue())
    return "\n".join(lines)
