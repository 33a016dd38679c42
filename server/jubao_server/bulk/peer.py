"""The client certificate of a Flight call under mutual TLS.

The gRPC server reads the verified client certificate from the call's TLS session and its SHA-256
fingerprint names the tenant. Arrow Flight verifies the certificate against the client CA in the same
handshake but gives Python only the TLS peer's identity (`ServerCallContext.peer_identity()`: gRPC's
peer identity, the certificate's first subject alternative name, else its common name), never the
certificate. So the client sends its certificate too, in the `x-jubao-client-certificate` header (base64
of the DER; `jubao.bulk` does it), and the server takes it as the call's certificate only if the client
CA issued it and its identity is the one TLS verified; its fingerprint then names the tenant exactly as
for gRPC. The TLS handshake proved that the caller holds the key of a certificate the CA issued for that
identity, so this is sound while the client CA issues each identity to one party only, the usual rule of
a private client CA (it names the party, like an account name).
"""

from __future__ import annotations

import base64
import binascii
import ssl
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from jubao.bulk.client import CERTIFICATE_HEADER
from jubao.reasons import Reason

from jubao_server.errors import ApiError, unauthenticated

# The general names gRPC puts in a TLS peer's identity, in the certificate's order.
_IDENTITY_NAMES: Final = (x509.DNSName, x509.UniformResourceIdentifier, x509.RFC822Name, x509.IPAddress)


class ClientCertificates:
    """Checks the certificate a Flight call presents against its TLS peer, with the client CA's roots."""

    def __init__(self, client_ca_pem: bytes) -> None:
        self._roots = x509.load_pem_x509_certificates(client_ca_pem)

    def presented(self, header: str | None, tls_identity: bytes) -> bytes:
        """The PEM of the certificate in `header`, if the client CA issued it to the TLS peer
        `tls_identity`; else UNAUTHENTICATED (CLIENT_CERTIFICATE_UNKNOWN)."""
        if header is None:
            raise _refused(f"send the client certificate (base64 DER) in '{CERTIFICATE_HEADER}'")
        try:
            der = base64.b64decode(header, validate=True)
            certificate = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError):
            raise _refused(f"'{CERTIFICATE_HEADER}' is not a base64 DER certificate") from None
        if not any(_issued_by(certificate, root) for root in self._roots):
            raise _refused("the client certificate was not issued by the client CA")
        if not tls_identity or peer_identity(certificate) != tls_identity.decode(errors="replace"):
            raise _refused("the client certificate is not the one of this TLS session")
        return ssl.DER_cert_to_PEM_cert(der).encode()


def peer_identity(certificate: x509.Certificate) -> str:
    """The identity gRPC gives a TLS peer with this certificate: its first subject alternative name (DNS,
    URI, e-mail or IP address), else its common name."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = x509.SubjectAlternativeName([])
    for name in names:
        if isinstance(name, _IDENTITY_NAMES):
            return str(name.value)
    common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else ""


def _issued_by(certificate: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _refused(message: str) -> ApiError:
    return unauthenticated(Reason.CLIENT_CERTIFICATE_UNKNOWN, message)
