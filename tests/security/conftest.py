"""Fixtures of the security tests: self-signed certificates, token files, crafted images, servers with TLS and auth.

The servers are the real app under uvicorn on 127.0.0.1 (``tests/service/conftest.start_server``) with the shared
tiny model repository.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.settings import Settings
from tests.service.conftest import client, images, model_repo, server, start_server  # noqa: F401 - fixtures

TOKEN = "s3cret-Token-for-tests-0123456789"


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost that is its own CA, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN + "\n")  # as `echo` or a Kubernetes Secret writes it
    return path


@pytest.fixture(scope="session")
def secure_server(model_repo, tls_files, token_file):
    """TLS on HTTP and gRPC, bearer auth on: one server for the auth, TLS and log tests."""
    cert, key = tls_files
    running = start_server(Settings(model_repo=model_repo, poll_interval_s=0, max_batch_size=8, batch_timeout_ms=5,
                                    max_body_mb=2, grpc_max_message_mb=2, tls_cert_file=cert, tls_key_file=key,
                                    auth_token_file=token_file))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def ca_context(tls_files) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))
