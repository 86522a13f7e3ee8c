"""Creating the search pipelines of profiles ahead of time: the admin step of a secured cluster.

A searcher creates the pipeline a server-side hybrid search names on first use, but creating a
pipeline is a cluster privilege that a read-only search role should not hold.  So an admin (or
``cmsearch index create``, run by whoever may) puts every pipeline a profile can name
(:func:`query_builder.bodies.profile_pipelines`), and searchers that may not create pipelines
use those (:mod:`query_builder.fusion_probe`).  Pipelines belong to the cluster, not to an
index, and their names are hashes of their bodies, so putting them again is harmless.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from opensearchpy.exceptions import AuthorizationException, OpenSearchException, TransportError

from .bodies import profile_pipelines
from .profile import Profile, load_profile, shipped_profiles

__all__ = ["PipelinesPut", "put_profile_pipelines"]


@dataclass
class PipelinesPut:
    """What :func:`put_profile_pipelines` did: pipeline names put, per profile, and failures."""

    put: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)   # profile -> reason

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.put.values())


def put_profile_pipelines(client: Any, profiles: Iterable[str | Profile] | None = None) -> PipelinesPut:
    """Put every search pipeline of ``profiles`` (default: the shipped ones).

    A cluster without the processors (no neural-search) fails a profile, named in ``failed``
    with the engine's reason; a user without the privilege raises ``AuthorizationException``.
    """
    out = PipelinesPut()
    for source in (shipped_profiles() if profiles is None else profiles):
        profile = load_profile(source)
        names: list[str] = []
        try:
            for p in profile_pipelines(profile):
                client.transport.perform_request("PUT", f"/_search/pipeline/{p.name}", body=p.body)
                names.append(p.name)
        except AuthorizationException:
            raise
        except (OpenSearchException, TransportError) as exc:
            out.failed[profile.name] = str(getattr(exc, "error", "") or exc)[:300]
        out.put[profile.name] = names
    return out
