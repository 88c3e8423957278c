"""Identities end to end: tokens, grants and projects from the command line, revocation and expiry, anonymous access
off, OpenID Connect tokens over HTTP, and the audit log."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from stadsdata import cli
from stadsdata.access import TOKEN_CACHE_SECONDS
from stadsdata.api.app import create_app
from stadsdata.settings import Settings

WELL = {
    "name": "well",
    "description": "a crawlspace well",
    "properties": {"project": "groundwater", "visibility": "internal"},
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def city(world_settings: Callable[[str], Settings], request: pytest.FixtureRequest) -> Settings:
    return world_settings("id" + str(abs(hash(request.node.nodeid)) % 10**8))


def test_tokens_grants_and_projects_from_the_command_line(city: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", city.db]
    code, out, err = run(capsys, "project", "create", "groundwater", "--description", "wells", *db)
    assert code == 0 and "created" in out
    assert run(capsys, "project", "list", *db)[1] == "groundwater\twells\n"
    code, out, err = run(capsys, "grant", "add", "gw-service", "groundwater", "writer", "--personal", *db)
    assert code == 0 and "writer in groundwater with the personal right" in out
    assert run(capsys, "grant", "list", *db)[1] == "gw-service\tgroundwater\twriter\tpersonal\n"
    code, secret, err = run(capsys, "token", "create", "--subject", "gw-service", "--name", "app", *db)
    secret = secret.strip()
    assert code == 0 and secret.startswith("sdt_") and len(secret) > 40 and "shown once" in err
    code, listing, _ = run(capsys, "token", "list", *db)
    token_id = listing.split("\t")[0]
    assert "gw-service\tapp\t" in listing and listing.rstrip().endswith("active")
    assert secret not in listing  # the secret is not kept
    # The token works on a server.
    with TestClient(create_app(city), base_url="http://testserver") as client:
        h = {"Authorization": f"Bearer {secret}"}
        assert client.post("/v1.1/Things", json=WELL).status_code == 401
        assert client.post("/v1.1/Things", json=WELL, headers=h).status_code == 201
        assert client.get("/v1.1/Things", headers=h).json()["value"][0]["name"] == "well"
        assert client.get("/v1.1/Things").json()["value"] == []  # internal: not for anonymous
        # Revoked from the command line while the server runs: refused within the cache time.
        assert run(capsys, "token", "revoke", token_id, *db)[0] == 0
        time.sleep(TOKEN_CACHE_SECONDS + 0.2)
        r = client.get("/v1.1/Things", headers=h)
        assert r.status_code == 401 and "unknown, expired or revoked" in r.json()["message"]
    assert "revoked" in run(capsys, "token", "list", *db)[1]
    assert run(capsys, "token", "revoke", token_id, *db)[0] == 1  # not active any more
    assert run(capsys, "grant", "remove", "gw-service", "groundwater", *db)[0] == 0
    assert run(capsys, "grant", "list", *db)[1] == ""
    code, _, err = run(capsys, "grant", "add", "bad subject!", "groundwater", "reader", *db)
    assert code == 2 and "subject 'bad subject!' is not valid" in err


def test_expired_tokens_and_no_anonymous_access(city: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", city.db]
    secret = run(capsys, "token", "create", "--subject", "short", "--expires-days", "0.00001", *db)[1].strip()
    time.sleep(1.0)
    settings = dataclasses.replace(city, anonymous="none")
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        r = client.get("/v1.1/Things")
        assert r.status_code == 401 and "needs a token" in r.json()["message"]
        assert client.get("/v1.1/Things", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        assert client.get("/v1.1/Things", headers={"Authorization": "Token abc"}).status_code == 401
        assert client.get("/v1.1").status_code == 200  # the service root names the entity sets only


def test_audit_log(city: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", city.db]
    run(capsys, "grant", "add", "staff", "groundwater", "reader", "--personal", *db)
    run(capsys, "grant", "add", "admin", "*", "admin", "--personal", *db)
    run(capsys, "grant", "add", "writer", "groundwater", "writer", *db)
    tokens = {s: run(capsys, "token", "create", "--subject", s, *db)[1].strip() for s in ("staff", "admin", "writer")}
    with TestClient(create_app(city), base_url="http://testserver") as client:

        def h(s: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[s]}"}

        assert client.post("/v1.1/Things", json=WELL, headers=h("writer")).status_code == 201
        assert client.get("/v1.1/Things?$top=5", headers=h("staff")).status_code == 200
        assert client.get("/v1.1/Things(99)", headers=h("staff")).status_code == 404
        assert client.get("/v1.1/Things", headers=h("writer")).status_code == 200  # no personal right: not recorded
        assert client.get("/v1.1/Things").status_code == 200  # anonymous: not recorded
        r = client.get("/audit", headers=h("staff"))
        assert r.status_code == 403 and "admins of every project" in r.json()["message"]
        doc = client.get("/audit", headers=h("admin")).json()
        rows = [(e["subject"], e["action"], e["target"], e["status"]) for e in doc["value"]]
        assert rows[:3] == [
            ("writer", "POST", "/v1.1/Things", 201),
            ("staff", "GET", "/v1.1/Things?$top=5", 200),
            ("staff", "GET", "/v1.1/Things(99)", 404),
        ]
        assert all(s in ("writer", "staff", "admin") for s, *_ in rows)
        one = client.get("/audit?subject=staff&limit=1", headers=h("admin")).json()
        assert [e["target"] for e in one["value"]] == ["/v1.1/Things?$top=5"] and "after=" in one["nextLink"]
        assert client.get("/audit?since=yesterday", headers=h("admin")).status_code == 400
    code, out, _ = run(capsys, "audit", "--subject", "staff", *db)
    assert code == 0 and "\tstaff\tGET\t404\t/v1.1/Things(99)" in out


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[rsa.RSAPrivateKey, Path]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    yield key, path


def test_openid_connect_tokens(
    city: Settings, provider: tuple[rsa.RSAPrivateKey, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, jwks = provider
    issuer, audience = "https://login.enschede.example/realms/city", "stadsdata"
    settings = dataclasses.replace(city, oidc_issuer=issuer, oidc_audience=audience, oidc_jwks=str(jwks))
    run(capsys, "grant", "add", "analyst-7", "traffic", "reader", "--db", city.db)  # a grant in the database too

    def token(**claims: Any) -> str:
        now = int(time.time())
        body = {"iss": issuer, "aud": audience, "sub": "analyst-7", "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})

    with TestClient(create_app(settings), base_url="http://testserver") as client:
        admin = token(sub="oidc-admin", stadsdata_roles=["*:admin:personal"])
        for project in ("groundwater", "traffic"):
            body = {**WELL, "name": project, "properties": {"project": project, "visibility": "internal"}}
            r = client.post("/v1.1/Things", json=body, headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 201, r.text
        # The roles claim and the database grants together.
        mine = token(stadsdata_roles=["groundwater:reader"])
        names = {
            t["name"] for t in client.get("/v1.1/Things", headers={"Authorization": f"Bearer {mine}"}).json()["value"]
        }
        assert names == {"groundwater", "traffic"}
        expired = token(exp=int(time.time()) - 120)
        r = client.get("/v1.1/Things", headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["message"]
        foreign = token(iss="https://elsewhere.example")
        assert client.get("/v1.1/Things", headers={"Authorization": f"Bearer {foreign}"}).status_code == 401
