"""Certificates for a wss:// stand-in, made on the spot: a test CA and what it signs.

``TestCertificates(folder).server(hosts)`` writes a CA (``ca.pem``) and a certificate for
``hosts`` signed by it (``<name>.pem`` with its chain, ``<name>.key``); ``self_signed()``
writes a certificate that no CA signed (the CA's own, served as a leaf). A relay trusts the
CA the standard OpenSSL way, ``SSL_CERT_FILE=<folder>/ca.pem`` in its environment (Python's
default SSL context reads it: docs/openai-realtime.md), exactly as an operator would give it
a private CA; no setting of ours is involved.

Uses ``trustme`` (a test dependency: requirements/dev.txt and bench.txt), which makes real
X.509 certificates with ``cryptography``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate chain and its key, as files a TLS server loads."""

    certfile: Path
    keyfile: Path


class TestCertificates:
    """A test CA in ``folder``, and the server certificates it signs."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA(organization_name="Liveline test CA")
        self.ca_file = folder / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def server(self, *hosts: str, name: str = "server") -> ServerCertificate:
        """A certificate for ``hosts`` (names or IP addresses), signed by the test CA."""
        leaf = self._ca.issue_cert(*hosts)
        certfile, keyfile = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(keyfile))
        return ServerCertificate(certfile, keyfile)

    def self_signed(self, name: str = "self-signed") -> ServerCertificate:
        """A certificate that signs itself (another CA's own), which nothing here trusts."""
        other = trustme.CA(organization_name="Nobody's CA")
        certfile, keyfile = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        other.cert_pem.write_to_path(str(certfile))
        other.private_key_pem.write_to_path(str(keyfile))
        return ServerCertificate(certfile, keyfile)
