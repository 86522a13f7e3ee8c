"""A secured local node, the way production clusters run: TLS and least-privilege users.

Production OpenSearch clusters run the security plugin, so the tools must work there: over
HTTPS with certificate verification, with basic-auth users whose roles hold only what their job
needs.  This module makes the local node such a cluster (``cmsearch engine start --secure``):

- a throw-away certificate authority and a node certificate (``localhost`` / ``127.0.0.1``),
  made on the first secure start with ``cryptography``; the same certificate serves HTTP and
  transport TLS.  Keys are 0600 files in the node's config directory, inside the 0700 state dir;
  the CA certificate (public) is ``<state>/security/ca.pem``, for clients' ``--ca-certs``.
- internal users with random passwords, stored only as bcrypt hashes in the plugin's
  configuration and in ``<state>/security/credentials.json`` (0600) for their owner; they are
  set at the first start (``plugins.security.allow_default_init_securityindex``).  A cluster's
  nodes (all on loopback, all of one state dir) share the node certificate, whose registered id
  in the SAN tells the plugin it is a node's; one of them writes the security index, the others
  read it (:meth:`SecureNode.configure`).
- the roles of :func:`role_definitions`: *ingest* (create and load the products index), *search*
  (read-only on it, every profile, no cluster privilege) and *events* (write the events index
  only), described in the README's privileges section.

The role definitions are plain data, so a real cluster's admin can apply the same ones through
the security REST API (``PUT _plugins/_security/api/roles/<name>``).
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import os
import secrets
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SECURITY_PLUGIN_CLASS", "SECURITY_PLUGIN_DIR", "SecurityError", "SecureNode", "Credentials",
    "role_definitions", "INGEST_CLUSTER", "INGEST_INDEX", "SEARCH_CLUSTER", "SEARCH_INDEX", "EVENTS_CLUSTER", "EVENTS_INDEX",
]

SECURITY_PLUGIN_CLASS = "org.opensearch.security.OpenSearchSecurityPlugin"
SECURITY_PLUGIN_DIR = "opensearch-security"

# the users made at the first start: name -> role (admin has the plugin's built-in all_access)
ADMIN, INGEST, SEARCH, EVENTS = "admin", "cmsearch-ingest", "cmsearch-search", "cmsearch-events"
ROLE_OF = {ADMIN: "all_access", INGEST: "cmsearch_ingest", SEARCH: "cmsearch_search", EVENTS: "cmsearch_events"}

# the index patterns the local node's roles cover (a real cluster names its own)
PRODUCTS_PATTERNS = ("products", "products-*")
EVENTS_PATTERNS = ("cmsearch-events", "cmsearch-events-*")

# What a load needs, and nothing else.  Cluster: bulk and multi-get are "composite" requests the
# plugin checks at cluster level first (each item is then checked against the index
# permissions); cluster health tells `index create` how many data nodes there are (replicas);
# scroll reads the ids for --delete-missing.
INGEST_CLUSTER = ("cluster:monitor/health", "indices:data/write/bulk", "indices:data/read/mget",
                  "indices:data/read/scroll", "indices:data/read/scroll/clear")
INGEST_INDEX = (
    "indices:admin/create", "indices:admin/delete", "indices:admin/get", "indices:admin/exists",
    "indices:admin/mappings/get", "indices:admin/mapping/put",
    "indices:monitor/settings/get", "indices:admin/settings/update",
    "indices:admin/refresh", "indices:admin/refresh*", "indices:admin/forcemerge",
    "indices:monitor/stats",
    "indices:data/write/index", "indices:data/write/update", "indices:data/write/delete",
    "indices:data/write/bulk", "indices:data/write/bulk*",
    "indices:data/read/search", "indices:data/read/mget", "indices:data/read/mget*",
    "indices:data/read/get", "indices:data/read/scroll",
)
# Read-only: searching (search, count, multi-search items, aggregations) and reading the
# mapping, whose _meta records the index's vector space.  Multi-search is a composite request:
# its one cluster-level permission lets the plugin look at the items, each of which is checked
# against these index permissions; it grants nothing on its own.
SEARCH_CLUSTER = ("indices:data/read/msearch",)
SEARCH_INDEX = ("indices:data/read/search", "indices:data/read/search*", "indices:data/read/msearch",
                "indices:data/read/get", "indices:data/read/mget", "indices:admin/mappings/get")
# Write-only on the events index: create it on first use, check its mapping, append, refresh.
EVENTS_CLUSTER = ("indices:data/write/bulk",)
EVENTS_INDEX = ("indices:admin/create", "indices:admin/get", "indices:admin/exists", "indices:admin/mappings/get",
                "indices:data/write/index", "indices:data/write/bulk", "indices:data/write/bulk*",
                "indices:admin/refresh", "indices:admin/refresh*")


class SecurityError(RuntimeError):
    """The secured node's certificates, users or configuration could not be made or read."""


def role_definitions(products: tuple[str, ...] = PRODUCTS_PATTERNS,
                     events: tuple[str, ...] = EVENTS_PATTERNS) -> dict[str, dict[str, Any]]:
    """The three roles as the security plugin takes them (roles.yml, or the REST API's body)."""
    def role(cluster, patterns, actions):
        return {"cluster_permissions": list(cluster),
                "index_permissions": [{"index_patterns": list(patterns), "allowed_actions": list(actions)}]}

    return {
        "cmsearch_ingest": role(INGEST_CLUSTER, products, INGEST_INDEX),
        "cmsearch_search": role(SEARCH_CLUSTER, products, SEARCH_INDEX),
        "cmsearch_events": role(EVENTS_CLUSTER, events, EVENTS_INDEX),
    }


@dataclass(frozen=True)
class Credentials:
    """The users of the secured local node and their passwords; ``repr`` shows no password."""

    passwords: dict[str, str]

    def __repr__(self) -> str:
        return f"Credentials(users={sorted(self.passwords)})"

    def password(self, user: str) -> str:
        return self.passwords[user]


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file (replacing any), never readable by others, even briefly."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _crypto():
    try:
        import bcrypt  # noqa: F401
        from cryptography import x509  # noqa: F401
    except ImportError as exc:
        raise SecurityError(f"a secured node needs the Python packages cryptography and bcrypt ({exc}); "
                            "install them with: pip install 'cmsearch[secure]'") from None


# the security plugin knows its nodes' certificates by this registered id in their SAN (its
# default ``plugins.security.cert.oid``), so no nodes_dn list is needed
NODE_OID = "1.2.3.4.5.5"


class SecureNode:
    """The security material of one state dir: CA, node certificate, users, plugin configuration."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "security"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def credentials_file(self) -> Path:
        return self.dir / "credentials.json"

    def exists(self) -> bool:
        return self.ca_file.is_file() and self.credentials_file.is_file()

    def credentials(self) -> Credentials:
        try:
            data = json.loads(self.credentials_file.read_text())
            return Credentials({str(k): str(v) for k, v in data["users"].items()})
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise SecurityError(f"cannot read the secured node's users from {self.credentials_file}: "
                                f"{type(exc).__name__}") from None

    # ---- made once per state dir ------------------------------------------------------
    def ensure(self) -> None:
        """Make the CA, the node certificate and the users, unless an earlier start made them."""
        if self.exists():
            return
        _crypto()
        _private_dir(self.dir)
        ca_key, ca_cert = _make_ca()
        node_key, node_cert = _make_node_cert(ca_key, ca_cert)
        from cryptography.hazmat.primitives import serialization

        def key_pem(key) -> bytes:
            return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

        _write_private(self.dir / "ca-key.pem", key_pem(ca_key))
        _write_private(self.dir / "node-key.pem", key_pem(node_key))
        _write_private(self.dir / "node.pem", node_cert.public_bytes(serialization.Encoding.PEM))
        users = {u: secrets.token_urlsafe(18) for u in ROLE_OF}
        _write_private(self.credentials_file, json.dumps({"users": users}, indent=2).encode())
        _write_private(self.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM))  # written last: the marker

    def configure(self, config_dir: Path, *, init_index: bool = True) -> tuple[str, ...]:
        """Copy the certificates into a node's config dir and return the node settings (``-E``)
        that turn TLS and the plugin on.

        ``init_index``: this node writes the users and roles into the security index when the
        cluster has none yet (the plugin's configuration files are written here for it).  In a
        cluster exactly one node does, so two nodes never race to create and fill that index;
        the others wait until it exists and read it (it is replicated to every node).
        """
        self.ensure()
        _crypto()
        config_dir = _private_dir(Path(config_dir))
        for name in ("ca.pem", "node.pem", "node-key.pem"):
            _write_private(config_dir / name, (self.dir / name).read_bytes())
        if init_index:
            self._write_plugin_config(_private_dir(config_dir / "opensearch-security"))
        return (
            "-Eplugins.security.ssl.transport.pemcert_filepath=node.pem",
            "-Eplugins.security.ssl.transport.pemkey_filepath=node-key.pem",
            "-Eplugins.security.ssl.transport.pemtrustedcas_filepath=ca.pem",
            "-Eplugins.security.ssl.transport.enforce_hostname_verification=false",
            "-Eplugins.security.ssl.http.enabled=true",
            "-Eplugins.security.ssl.http.pemcert_filepath=node.pem",
            "-Eplugins.security.ssl.http.pemkey_filepath=node-key.pem",
            "-Eplugins.security.ssl.http.pemtrustedcas_filepath=ca.pem",
            f"-Eplugins.security.allow_default_init_securityindex={'true' if init_index else 'false'}",
            "-Eplugins.security.audit.type=noop",
            "-Eplugins.security.system_indices.enabled=true",
        )

    def _write_plugin_config(self, sec: Path) -> None:
        """The plugin's configuration files (users as bcrypt hashes, roles, mappings), 0600."""
        import bcrypt

        creds = self.credentials()
        users = {u: {"hash": bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=12)).decode(),
                     "description": f"cmsearch local {ROLE_OF[u]} user"}
                 for u, p in creds.passwords.items()}
        mapping = {role: {"users": [u for u, r in ROLE_OF.items() if r == role]} for role in set(ROLE_OF.values())}
        files: dict[str, dict[str, Any]] = {
            "config.yml": {"_meta": {"type": "config", "config_version": 2}, "config": {"dynamic": {
                "http": {"anonymous_auth_enabled": False},
                "authc": {"basic_internal_auth_domain": {
                    "http_enabled": True, "transport_enabled": True, "order": 0,
                    "http_authenticator": {"type": "basic", "challenge": True},
                    "authentication_backend": {"type": "intern"}}}}}},
            "internal_users.yml": {"_meta": {"type": "internalusers", "config_version": 2}, **users},
            "roles.yml": {"_meta": {"type": "roles", "config_version": 2}, **role_definitions()},
            "roles_mapping.yml": {"_meta": {"type": "rolesmapping", "config_version": 2}, **mapping},
            "action_groups.yml": {"_meta": {"type": "actiongroups", "config_version": 2}},
            "tenants.yml": {"_meta": {"type": "tenants", "config_version": 2}},
            "nodes_dn.yml": {"_meta": {"type": "nodesdn", "config_version": 2}},
            "allowlist.yml": {"_meta": {"type": "allowlist", "config_version": 2},
                              "config": {"enabled": False}},
            "audit.yml": {"_meta": {"type": "audit", "config_version": 2}, "config": {"enabled": False}},
        }
        for name, content in files.items():   # JSON is YAML: no YAML writer needed
            _write_private(sec / name, json.dumps(content, indent=1).encode())

    # ---- talking to it ----------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def admin_opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener that verifies the node against the CA and sends the admin's basic auth
        (for the start's health checks)."""
        import base64

        token = base64.b64encode(f"{ADMIN}:{self.credentials().password(ADMIN)}".encode()).decode()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ssl_context()))
        opener.addheaders = [("Authorization", f"Basic {token}")]
        return opener


def _make_ca():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cmsearch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"cmsearch local CA {secrets.token_hex(4)}")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_node_cert(ca_key, ca_cert):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cmsearch"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "cmsearch-node")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.RegisteredID(x509.ObjectIdentifier(NODE_OID))]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert
