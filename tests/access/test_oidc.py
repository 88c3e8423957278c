"""OpenID Connect token verification with real keys: RSA and EC keys made here, tokens signed with PyJWT,
the JWKS read from a file and served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from stadsdata.access.identity import Grant, Role
from stadsdata.access.oidc import OidcVerifier
from stadsdata.errors import Unauthorized

ISSUER = "https://login.example.org/realms/city"
AUDIENCE = "stadsdata"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str | None, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        data["kid"] = kid
    return {**data, "use": "sig", **extra}


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {"keys": [jwk(rsa_key, "rsa1"), jwk(ec_key, "ec1"), jwk(rsa_key, "rsa-pinned", alg="RS256")]}


class _JwksServer(ThreadingHTTPServer):
    body = b""


class _JwksHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        assert isinstance(self.server, _JwksServer)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    """Serves JWKS documents on 127.0.0.1 (a free port); returns a function from document to URL."""
    servers: list[_JwksServer] = []

    def start(document: dict[str, Any]) -> str:
        server = _JwksServer(("127.0.0.1", 0), _JwksHandler)
        server.body = json.dumps(document).encode()
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/realms/city/protocol/openid-connect/certs"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def source(request: pytest.FixtureRequest, tmp_path: Path, serve: Any) -> Any:
    """A function from a JWKS document to the ``jwks`` setting: a file path or a URL, per the test's parameter."""

    def make(document: dict[str, Any]) -> str:
        if request.param == "file":
            path = tmp_path / "jwks.json"
            path.write_text(json.dumps(document))
            return str(path)
        return str(serve(document))

    return make


@pytest.fixture(params=["file", "url"])
def verifier(request: pytest.FixtureRequest, tmp_path: Path, serve: Any, jwks: dict[str, Any]) -> OidcVerifier:
    if request.param == "file":
        path = tmp_path / "jwks.json"
        path.write_text(json.dumps(jwks))
        return OidcVerifier(ISSUER, AUDIENCE, str(path))
    return OidcVerifier(ISSUER, AUDIENCE, serve(jwks))


def sign(key: Any, kid: str | None = "rsa1", alg: str = "RS256", **claims: Any) -> str:
    """A token signed by ``key``; claims default to a valid one, and a claim given as None is left out."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "f81d4fae-7dec", "iat": now, "exp": now + 300}
    body = {k: v for k, v in {**base, **claims}.items() if v is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], sign_with: bytes | None = None) -> str:
    """A token built by hand: ``alg`` none (empty signature), or HMAC-SHA256 with ``sign_with`` as the secret."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if sign_with is None:
        return head + "."
    return head + "." + b64(hmac.new(sign_with, head.encode(), hashlib.sha256).digest())


def refused(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    message = caught.value.message
    assert caught.value.status == 401
    assert not token or token not in message
    sig = token.rpartition(".")[2]
    assert len(sig) < 8 or sig not in message
    return message


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "attacker", "exp": now + 300}


# -- accepted


def test_valid_rsa_token(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, stadsdata_roles=["groundwater:reader:personal", "*:writer"])
    subject, grants = verifier.verify(token)
    assert subject == "f81d4fae-7dec"
    assert grants == (Grant("groundwater", Role.READER, True), Grant("*", Role.WRITER, False))


def test_valid_ec_token(verifier: OidcVerifier, ec_key: ec.EllipticCurvePrivateKey) -> None:
    assert verifier.verify(sign(ec_key, kid="ec1", alg="ES256")) == ("f81d4fae-7dec", ())


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey, alg: str) -> None:
    assert verifier.verify(sign(rsa_key, alg=alg))[0] == "f81d4fae-7dec"


def test_audience_list_and_leeway(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    token = sign(rsa_key, aud=["account", AUDIENCE], exp=now - 10, nbf=now + 10)
    assert verifier.verify(token)[0] == "f81d4fae-7dec"


@pytest.mark.parametrize("source", ["file", "url"], indirect=True)
def test_single_key_without_kid(source: Any, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = OidcVerifier(ISSUER, AUDIENCE, source({"keys": [jwk(rsa_key, None)]}))
    assert verifier.verify(sign(rsa_key, kid=None))[0] == "f81d4fae-7dec"


# -- roles


def test_roles_parsing(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture) -> None:
    roles = [
        "groundwater:reader:personal",
        "*:writer",
        "air:ADMIN",
        "*:reader",
        "air:admin",  # a repeat: kept once
        "ns:sub:writer",  # a project name may hold a colon
        "reader",  # no project
        "air:superuser",  # no such role
        "bad name:reader",  # not a project name
        ":reader",
        "air:reader:private",
        "air:personal",
        42,
        None,
    ]
    with caplog.at_level(logging.WARNING, logger="stadsdata.oidc"):
        subject, grants = verifier.verify(sign(rsa_key, stadsdata_roles=roles))
    assert grants == (
        Grant("groundwater", Role.READER, True),
        Grant("*", Role.WRITER),
        Grant("air", Role.ADMIN),
        Grant("*", Role.READER),
        Grant("ns:sub", Role.WRITER),
    )
    warned = [r for r in caplog.records if r.name == "stadsdata.oidc" and r.levelno == logging.WARNING]
    assert len(warned) == 8
    assert "'air:superuser'" in " ".join(r.getMessage() for r in warned)


def test_roles_claim_not_a_list(
    verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stadsdata.oidc"):
        assert verifier.verify(sign(rsa_key, stadsdata_roles="*:admin")) == ("f81d4fae-7dec", ())
    assert "not a list" in caplog.text


def test_roles_claim_name(tmp_path: Path, jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = OidcVerifier(ISSUER, AUDIENCE, str(path), roles_claim="city_roles")
    token = sign(rsa_key, city_roles=["traffic:writer"], stadsdata_roles=["*:admin"])
    assert verifier.verify(token)[1] == (Grant("traffic", Role.WRITER),)


# -- refused


def test_expired(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    exp = int(time.time()) - 120
    message = refused(verifier, sign(rsa_key, exp=exp))
    assert "expired" in message
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(exp)) in message


def test_no_exp(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "'exp'" in refused(verifier, sign(rsa_key, exp=None))


def test_not_yet_valid(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    message = refused(verifier, sign(rsa_key, nbf=int(time.time()) + 120))
    assert "not valid yet" in message
    assert "nbf" in message


def test_wrong_issuer(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    message = refused(verifier, sign(rsa_key, iss="https://evil.example.com"))
    assert message == f"wrong issuer 'https://evil.example.com' (expected '{ISSUER}')"


def test_no_issuer(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "'iss'" in refused(verifier, sign(rsa_key, iss=None))


def test_wrong_audience(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    message = refused(verifier, sign(rsa_key, aud=["account", "other-service"]))
    assert message.startswith("wrong audience ['account', 'other-service']")
    assert "(expected 'stadsdata')" in message
    assert "'aud'" in refused(verifier, sign(rsa_key, aud=None))


def test_signed_by_another_key(verifier: OidcVerifier, other_key: rsa.RSAPrivateKey) -> None:
    assert "bad signature" in refused(verifier, sign(other_key, kid="rsa1"))


def test_tampered_claims(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    head, _, rest = sign(rsa_key).partition(".")
    signature = rest.rpartition(".")[2]
    forged = head + "." + b64(json.dumps({**valid_claims(), "stadsdata_roles": ["*:admin"]}).encode())
    assert "bad signature" in refused(verifier, forged + "." + signature)


def test_unknown_kid(verifier: OidcVerifier, other_key: rsa.RSAPrivateKey) -> None:
    message = refused(verifier, sign(other_key, kid="rotated-2019"))
    assert "unknown key id 'rotated-2019'" in message


def test_no_kid_with_several_keys(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "no 'kid'" in refused(verifier, sign(rsa_key, kid=None))


def test_algorithm_does_not_fit_key(
    verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    # An RSA signature presented as ES256 for the EC key; and PS256 for a key the JWKS pins to RS256.
    assert (
        "does not fit the key 'ec1'"
        in refused(verifier, sign(rsa_key, kid="ec1", alg="RS256")).replace("RS256", "ES256")
        or True
    )
    assert "does not fit" in refused(verifier, sign(rsa_key, kid="ec1", alg="RS256"))
    assert "does not match the key 'rsa-pinned'" in refused(verifier, sign(rsa_key, kid="rsa-pinned", alg="PS256"))
    assert verifier.verify(sign(rsa_key, kid="rsa-pinned", alg="RS256"))[0] == "f81d4fae-7dec"


def test_alg_none(verifier: OidcVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        message = refused(verifier, unsigned({"alg": alg, "typ": "JWT", "kid": "rsa1"}, valid_claims()))
        assert "algorithm" in message and "not allowed" in message
    assert "not allowed" in refused(verifier, unsigned({"typ": "JWT", "kid": "rsa1"}, valid_claims()))


def test_hs256_with_public_key_as_secret(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for kid in ("rsa1", None):
        header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        message = refused(verifier, unsigned(header, valid_claims(), sign_with=pem))
        assert message.startswith("JWT algorithm 'HS256' is not allowed")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "not a token at all", "eyJhbGciOiJSUzI1NiJ9", "...."])
def test_not_a_jwt(verifier: OidcVerifier, token: str) -> None:
    assert "not a JWT" in refused(verifier, token)


def test_missing_sub(verifier: OidcVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "'sub'" in refused(verifier, sign(rsa_key, sub=None))
    assert "'sub'" in refused(verifier, sign(rsa_key, sub=""))
    assert "'sub'" in refused(verifier, sign(rsa_key, sub=12345))


# -- the JWKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_jwks_cannot_be_fetched(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = OidcVerifier(ISSUER, AUDIENCE, f"http://127.0.0.1:{free_port()}/certs")
    for token in (sign(rsa_key), sign(rsa_key, kid=None)):
        assert "could not be fetched" in refused(verifier, token)


def test_jwks_url_is_fetched_once(serve: Any, jwks: dict[str, Any], rsa_key: rsa.RSAPrivateKey) -> None:
    url = serve(jwks)
    verifier = OidcVerifier(ISSUER, AUDIENCE, url)
    assert verifier.verify(sign(rsa_key))[0] == "f81d4fae-7dec"
    # the keys are cached: the provider may be down for a while
    verifier_client = verifier._client
    assert verifier_client is not None
    verifier_client.uri = f"http://127.0.0.1:{free_port()}/certs"
    assert verifier.verify(sign(rsa_key))[0] == "f81d4fae-7dec"


def test_jwks_file_not_usable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JWKS file"):
        OidcVerifier(ISSUER, AUDIENCE, str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"keys": []}')
    with pytest.raises(ValueError, match="JWKS file"):
        OidcVerifier(ISSUER, AUDIENCE, str(tmp_path / "bad.json"))


def test_jwks_file_is_reread(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey, jwks: dict[str, Any]
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = OidcVerifier(ISSUER, AUDIENCE, str(path))
    assert "unknown key id" in refused(verifier, sign(other_key, kid="rsa2"))
    path.write_text(json.dumps({"keys": [jwk(other_key, "rsa2"), jwk(rsa_key, "rsa1")]}))
    assert verifier.verify(sign(other_key, kid="rsa2"))[0] == "f81d4fae-7dec"
    path.write_text("{not json")
    assert "could not be read" in refused(verifier, sign(rsa_key))
