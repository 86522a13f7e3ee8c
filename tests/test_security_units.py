"""Pure parts of the security work: the pipelines an admin puts, the roles, credentials handling."""
from __future__ import annotations

import itertools

import pytest

from engine.client import ConnectionSettings
from engine.security import Credentials, role_definitions
from query_builder.bodies import build_search, profile_pipelines
from query_builder.profile import load_profile, shipped_profiles
from query_builder.request import QueryVectors, RequestError, SearchRequest
from query_builder.understand import understand
from analysis import Tokenizer, Vocabulary


@pytest.mark.parametrize("name", shipped_profiles())
def test_profile_pipelines_cover_every_pipeline_a_search_names(name):
    """Whatever a request offers (text, vectors, a long query), the pipeline its hybrid search
    names is one an admin's `cmsearch pipelines put` created."""
    profile = load_profile(name)
    put = {p.name for p in profile_pipelines(profile)}
    vocab = Vocabulary(brands=[], category_paths=[])
    tok = Tokenizer(vocab.words())
    vec = (0.1,) * 8
    named = set()
    for text, t, i, f in itertools.product(("红色 连衣裙", " ".join(["连衣裙"] * 12), None), *[(None, vec)] * 3):
        vectors = QueryVectors(text=t, image=i, image_feature=f)
        try:
            req = SearchRequest(text=text, vectors=vectors)
        except RequestError:   # nothing to search with
            continue
        try:
            built = build_search(req, profile, understand(req, profile, tok, vocab), vocabulary=vocab)
        except Exception as exc:   # noqa: BLE001 - a request the profile has no retriever for
            assert "no retriever" in str(exc)
            continue
        if built.pipeline is not None and built.server_fits:
            named.add(built.pipeline.name)
    assert named <= put
    assert bool(named) == bool(put) or profile.fusion.mode == "client"


def test_roles_are_least_privilege():
    roles = role_definitions(("products",), ("cmsearch-events",))
    search, ingest, events = roles["cmsearch_search"], roles["cmsearch_ingest"], roles["cmsearch_events"]
    assert search["cluster_permissions"] == ["indices:data/read/msearch"]
    actions = search["index_permissions"][0]["allowed_actions"]
    assert all(a.startswith("indices:data/read/") or a == "indices:admin/mappings/get" for a in actions)
    assert not any("pipeline" in a or a.startswith("cluster:admin") for r in roles.values()
                   for a in r["cluster_permissions"])
    assert events["index_permissions"][0]["index_patterns"] == ["cmsearch-events"]
    assert not any(a.startswith("indices:data/read") for a in events["index_permissions"][0]["allowed_actions"])
    assert ingest["index_permissions"][0]["index_patterns"] == ["products"]


def test_credentials_and_settings_never_show_a_password(tmp_path, monkeypatch):
    creds = Credentials({"admin": "s3cret-pw-123"})
    assert "s3cret" not in repr(creds)
    pw = tmp_path / "pw"
    pw.write_text("from-file-pw\nignored\n")
    for k in ("OPENSEARCH_PASSWORD", "OPENSEARCH_PASSWORD_FILE", "OPENSEARCH_USER", "OPENSEARCH_CA_CERTS"):
        monkeypatch.delenv(k, raising=False)
    conn = ConnectionSettings.resolve("https://127.0.0.1:9", user="u", password_file=str(pw))
    assert conn.password == "from-file-pw" and "from-file" not in repr(conn)
    monkeypatch.setenv("OPENSEARCH_PASSWORD_FILE", str(pw))
    assert ConnectionSettings.resolve("https://u@127.0.0.1:9").password == "from-file-pw"
    # the URL's own password comes before any file
    assert ConnectionSettings.resolve("https://u:in-url@127.0.0.1:9").password == "in-url"
    with pytest.raises(ValueError, match="cannot read the password file"):
        ConnectionSettings.resolve("https://127.0.0.1:9", password_file=str(tmp_path / "none"))
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        ConnectionSettings.resolve("https://127.0.0.1:9", password_file=str(tmp_path / "empty"))


def test_describe_error_names_the_fix_without_the_password():
    from opensearchpy.exceptions import AuthenticationException, AuthorizationException, ConnectionError

    conn = ConnectionSettings(url="https://h:9200", user="ingest", password="pw-XYZ-987", ca_certs="/ca.pem")
    assert "refused the credentials of user 'ingest'" in conn.describe_error(AuthenticationException(401, "x"))
    anon = ConnectionSettings(url="https://h:9200")
    assert "none were given" in anon.describe_error(AuthenticationException(401, "x"))
    denied = AuthorizationException(403, "security_exception", {"error": {
        "type": "security_exception", "reason": "no permissions for [indices:admin/delete] pw-XYZ-987"}})
    msg = conn.describe_error(denied)
    assert "may not do this" in msg and "indices:admin/delete" in msg and "pw-XYZ-987" not in msg
    tls = ConnectionError("N/A", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get "
                          "local issuer certificate (_ssl.c:1006)", None)
    msg = conn.describe_error(tls)
    assert "could not be verified against the CA in /ca.pem (unable to get local issuer certificate)" in msg
    assert conn.describe_error(ValueError("other")) is None
