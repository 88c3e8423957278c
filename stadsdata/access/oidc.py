"""OpenID Connect access tokens: JWTs from an external provider (e.g. Keycloak), verified against its keys.

A token is accepted only when all of this holds:

* it is a signed JWT (JWS compact form) with ``alg`` one of RS256, RS384, RS512, ES256, ES384 or PS256.
  ``none`` and the HMAC algorithms (HS*) are always refused, so a token "signed" with the public key as an
  HMAC secret cannot pass;
* its signing key is in the configured JWKS: a local file (re-read when it changes) or the provider's JWKS
  endpoint (``https://``, fetched with ``jwt.PyJWKClient`` and cached). The key is found by the header's
  ``kid``; a token without ``kid`` is accepted only when the JWKS holds a single signing key. The key's type
  (and its ``alg``, if the JWKS names one) must fit the token's algorithm;
* the signature is valid; ``exp`` is present and not passed, ``nbf`` (if present) has come, ``iss`` equals
  the configured issuer, ``aud`` is or contains the configured audience (times with 30 s leeway);
* ``sub`` is a non-empty string: it becomes the subject.

The optional roles claim (``stadsdata_roles`` by default) lists grants as ``"project:role"`` or
``"project:role:personal"``, role one of reader, writer or admin, project a project name or ``*`` (all
projects): ``["groundwater:reader:personal", "*:writer"]``. Malformed entries are skipped with a warning.

Every failure raises ``Unauthorized`` with a message that says what is wrong; it never repeats the token.
``verify`` may fetch the JWKS over the network (blocking, up to ``FETCH_TIMEOUT`` seconds), so async code
calls it in a worker thread.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from jwt.exceptions import InvalidSubjectError

from stadsdata.access.identity import Grant, Role
from stadsdata.access.tokens import check_name
from stadsdata.errors import BadRequest, Unauthorized

log = logging.getLogger("stadsdata.oidc")  # not under stadsdata.access, the request log

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
"""The accepted signature algorithms: asymmetric only."""

_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1"}
"""The curve (in ``cryptography``'s names) that each EC algorithm signs with: P-256 and P-384."""
LEEWAY = 30
"""Seconds of clock difference allowed for ``exp``, ``nbf`` and ``iat``."""
FETCH_TIMEOUT = 10.0
"""Seconds to wait for the provider's JWKS endpoint."""
JWKS_CACHE_SECONDS = 300.0
"""How long a fetched JWKS is used before it is fetched again (an unknown ``kid`` refetches it sooner)."""
MAX_TOKEN_LENGTH = 16384


def _show(value: Any) -> str:
    """A claim value for an error message, cut short (it comes from the token, so it may be long)."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _when(value: Any) -> str:
    try:
        return datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return _show(value)


def _is_future(value: Any) -> bool:
    return isinstance(value, int | float) and value > datetime.now(UTC).timestamp() + LEEWAY


def _unknown_kid(kid: Any) -> Unauthorized:
    return Unauthorized(f"unknown key id {_show(kid)}: the provider has no such key (was it rotated away?)")


def _signing_keys(keys: list[jwt.PyJWK]) -> list[jwt.PyJWK]:
    return [k for k in keys if k.public_key_use in ("sig", None)]


class OidcVerifier:
    """Verifies OpenID Connect access tokens of one provider (``issuer``) for one audience (this service)."""

    def __init__(self, issuer: str, audience: str, jwks: str, roles_claim: str = "stadsdata_roles") -> None:
        """``jwks``: a JWKS file or the provider's JWKS URL; raises ValueError when a JWKS file is not usable."""
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.roles_claim = roles_claim
        self._client: jwt.PyJWKClient | None = None
        self._file_keys: list[jwt.PyJWK] = []
        self._file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        url = urlparse(jwks)
        if url.scheme in ("http", "https"):
            if url.scheme == "http" and url.hostname not in ("127.0.0.1", "::1", "localhost"):
                log.warning("the JWKS URL %s is plain http: anyone on the way can swap the provider's keys", jwks)
            # The JWK set cache (with a lifespan), not the per-kid LRU cache (cache_keys), which never expires:
            # a key the provider withdraws must stop working.
            self._client = jwt.PyJWKClient(jwks, cache_keys=False, lifespan=JWKS_CACHE_SECONDS, timeout=FETCH_TIMEOUT)
        else:
            try:
                self._load_file()
            except (OSError, ValueError, jwt.PyJWTError) as e:
                raise ValueError(f"the JWKS file {jwks} is not usable: {e}") from e

    def verify(self, token: str) -> tuple[str, tuple[Grant, ...]]:
        """The subject and the grants of a valid token; Unauthorized, saying why, for any other."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized(f"the bearer token is too long for a JWT (over {MAX_TOKEN_LENGTH} characters)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT (header.payload.signature, base64url)") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"JWT algorithm {_show(alg)} is not allowed; accepted: {', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        key = self._key(kid)
        self._check_key_fits(key, alg, kid)
        claims = self._decode(token, key, alg, kid)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise Unauthorized(f"the JWT's 'sub' claim is not a non-empty string: {_show(subject)}")
        return subject, self._grants(claims.get(self.roles_claim))

    # -- keys

    def _load_file(self) -> None:
        stat = os.stat(self.jwks)
        with open(self.jwks, encoding="utf-8") as f:
            document = json.load(f)
        if not isinstance(document, dict):
            raise ValueError("a JWKS is a JSON object with a 'keys' list")
        keys = _signing_keys(jwt.PyJWKSet.from_dict(document).keys)
        if not keys:
            raise ValueError("it holds no signing keys")
        self._file_keys = keys
        self._file_stamp = (stat.st_mtime_ns, stat.st_size)

    def _keys_from_file(self) -> list[jwt.PyJWK]:
        with self._lock:
            try:
                stat = os.stat(self.jwks)
                if (stat.st_mtime_ns, stat.st_size) != self._file_stamp:
                    self._load_file()
            except (OSError, ValueError, jwt.PyJWTError) as e:
                log.error("the JWKS file %s could not be read: %s", self.jwks, e)
                raise Unauthorized("the provider's keys (JWKS) could not be read; tell the service's operators") from e
            return self._file_keys

    def _key(self, kid: Any) -> jwt.PyJWK:
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("the JWT's 'kid' header is not a string")
        if self._client is None:
            keys = self._keys_from_file()
        elif kid is not None:
            return self._fetch_key(self._client, kid)
        else:
            keys = self._fetch_keys(self._client)
        if kid is None:
            if len(keys) == 1:
                return keys[0]
            raise Unauthorized(f"the JWT has no 'kid' header, which is needed: the provider has {len(keys)} keys")
        for key in keys:
            if key.key_id == kid:
                return key
        raise _unknown_kid(kid)

    def _fetch_keys(self, client: jwt.PyJWKClient) -> list[jwt.PyJWK]:
        try:
            keys = _signing_keys(client.get_jwk_set().keys)
        except jwt.PyJWKClientConnectionError as e:
            log.warning("the JWKS could not be fetched from %s: %s", self.jwks, e)
            raise Unauthorized("the provider's keys (JWKS) could not be fetched; try again later") from e
        except (jwt.PyJWTError, ValueError) as e:
            log.warning("the JWKS from %s is not usable: %s", self.jwks, e)
            raise Unauthorized(f"the provider's keys (JWKS) are not usable: {e}") from e
        if not keys:
            raise Unauthorized("the provider's keys (JWKS) hold no signing key")
        return keys

    def _fetch_key(self, client: jwt.PyJWKClient, kid: str) -> jwt.PyJWK:
        try:
            return client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as e:
            log.warning("the JWKS could not be fetched from %s: %s", self.jwks, e)
            raise Unauthorized("the provider's keys (JWKS) could not be fetched; try again later") from e
        except (jwt.PyJWTError, ValueError) as e:
            # Either the key is not there or the JWKS itself is bad: the cached set tells which.
            self._fetch_keys(client)
            raise _unknown_kid(kid) from e

    @staticmethod
    def _check_key_fits(key: jwt.PyJWK, alg: str, kid: Any) -> None:
        name = _show(kid) if kid is not None else "of the provider"
        named = key._jwk_data.get("alg")
        if named is not None and named != alg:
            raise Unauthorized(f"JWT algorithm {alg} does not match the key {name}, which is for {_show(named)}")
        k = key.key
        if alg.startswith(("RS", "PS")):
            fits = isinstance(k, RSAPublicKey | RSAPrivateKey)
        else:
            fits = isinstance(k, EllipticCurvePublicKey | EllipticCurvePrivateKey) and k.curve.name == _EC_CURVES[alg]
        if not fits:
            raise Unauthorized(f"JWT algorithm {alg} does not fit the key {name} ({key.key_type} key)")

    # -- claims

    def _decode(self, token: str, key: jwt.PyJWK, alg: str, kid: Any) -> dict[str, Any]:
        k = key.key
        if isinstance(k, RSAPrivateKey | EllipticCurvePrivateKey):
            k = k.public_key()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                k,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
            return claims
        except jwt.InvalidSignatureError:
            which = f"key {_show(kid)}" if kid is not None else "the provider's key"
            raise Unauthorized(f"bad signature: the JWT is not signed by {which}") from None
        except jwt.MissingRequiredClaimError as e:
            raise Unauthorized(f"the JWT has no {e.claim!r} claim, which is required") from None
        except jwt.ExpiredSignatureError:
            exp = _unverified(token).get("exp")
            raise Unauthorized(f"the JWT expired at {_when(exp)}") from None
        except jwt.ImmatureSignatureError:
            claims = _unverified(token)
            which = "nbf" if _is_future(claims.get("nbf")) else "iat"
            raise Unauthorized(f"the JWT is not valid yet: its {which} is {_when(claims.get(which))}") from None
        except jwt.InvalidIssuerError:
            iss = _unverified(token).get("iss")
            raise Unauthorized(f"wrong issuer {_show(iss)} (expected {self.issuer!r})") from None
        except jwt.InvalidAudienceError:
            aud = _unverified(token).get("aud")
            raise Unauthorized(f"wrong audience {_show(aud)} (expected {self.audience!r})") from None
        except InvalidSubjectError:
            raise Unauthorized("the JWT's 'sub' claim is not a string") from None
        except jwt.InvalidIssuedAtError:
            raise Unauthorized("the JWT's 'iat' claim is not a number") from None
        except jwt.DecodeError as e:
            raise Unauthorized(f"the JWT is malformed: {e}") from None
        except jwt.PyJWTError as e:
            raise Unauthorized(f"the JWT is not valid: {e}") from None

    def _grants(self, roles: Any) -> tuple[Grant, ...]:
        if roles is None:
            return ()
        if not isinstance(roles, list):
            log.warning("the %r claim is not a list of strings but %s; it is ignored", self.roles_claim, _show(roles))
            return ()
        grants: list[Grant] = []
        for entry in roles:
            grant = _grant(entry)
            if grant is None:
                log.warning(
                    "ignored %s in the %r claim: use project:role or project:role:personal (role reader, writer or "
                    "admin; project a name or *)",
                    _show(entry),
                    self.roles_claim,
                )
            elif grant not in grants:
                grants.append(grant)
        return tuple(grants)


def _grant(entry: Any) -> Grant | None:
    if not isinstance(entry, str):
        return None
    text = entry.strip()
    personal = text.endswith(":personal")
    if personal:
        text = text.removesuffix(":personal")
    project, sep, role = text.rpartition(":")
    if not sep:
        return None
    try:
        return Grant(check_name("project", project, allow_all=True), Role.parse(role), personal)
    except (BadRequest, ValueError):
        return None


def _unverified(token: str) -> dict[str, Any]:
    """The claims of a token whose signature has been verified already (for error messages)."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims
    except jwt.PyJWTError:
        return {}
