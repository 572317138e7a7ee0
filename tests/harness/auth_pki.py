"""Throwaway certificates for the mutual-TLS tests, made with the ``openssl`` CLI.

Two CAs: ``ca`` signs the server's certificate (for 127.0.0.1 and localhost)
and the client certificate the server trusts; ``rogue`` signs a client
certificate the server must refuse.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _new_key(path: Path) -> Path:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", path
    )
    return path


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key = _new_key(directory / f"{name}.key")
    cert = directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key = _new_key(directory / f"{name}.key")
    request = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", key, "-out", request, "-subj", f"/CN={name}")
    extfile = directory / f"{name}.ext"
    extfile.write_text(extensions)
    cert = directory / f"{name}.pem"
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", extfile,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca(directory, "ca")
    rogue = _ca(directory, "rogue")
    server = _leaf(
        directory,
        "server",
        ca,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    client_ext = "extendedKeyUsage=clientAuth\n"
    client = _leaf(directory, "core", ca, client_ext)
    rogue_client = _leaf(directory, "intruder", rogue, client_ext)
    return Pki(ca[0], *server, *client, *rogue_client)
