"""A search that failed because a node left mid-request is sent once more (pure: the flow is driven
by hand with responses of the shape a 3-node cluster gave when a node was killed under load)."""
from __future__ import annotations

import pytest
from opensearchpy.exceptions import TransportError

from query_builder import calls
from query_builder.calls import node_left as _node_left, read as _read

# an msearch item as node-0 answered 0.09 s after node-2 was killed (tests/test_secure_cluster.py)
NODE_LEFT_ITEM = {"status": 500, "error": {
    "type": "search_phase_execution_exception", "reason": "", "phase": "fetch",
    "root_cause": [{"type": "node_not_connected_exception", "reason": "[node-2][127.0.0.1:9394] Node not connected"}],
    "caused_by": {"type": "node_not_connected_exception", "reason": "[node-2][127.0.0.1:9394] Node not connected"}}}
OK_ITEM = {"status": 200, "hits": {"total": {"value": 1}, "hits": [{"_id": "a", "_score": 1.0}]}}
PARTIAL = {"_shards": {"total": 3, "successful": 2, "failed": 1, "failures": [
    {"shard": 1, "index": "p", "node": "x", "reason": {"type": "node_disconnected_exception", "reason": "gone"}}]},
    "hits": {"total": {"value": 0}, "hits": []}}
BAD_QUERY = {"status": 400, "error": {"type": "search_phase_execution_exception", "reason": "all shards failed",
                                      "root_cause": [{"type": "query_shard_exception", "reason": "no such field"}]}}


def drive(flow, answers):
    """Run ``flow``, answering its calls in turn from ``answers`` (an exception is raised at the yield)."""
    sent = []
    try:
        call = next(flow)
        for answer in answers:
            sent.append(call)
            call = flow.throw(answer) if isinstance(answer, BaseException) else flow.send(answer)
    except StopIteration as done:
        return done.value, sent
    raise AssertionError(f"the flow asked for more than {len(answers)} calls")


def test_node_left_is_found_in_msearch_items_partial_shards_and_errors():
    assert _node_left({"responses": [OK_ITEM, NODE_LEFT_ITEM]})
    assert _node_left(NODE_LEFT_ITEM) and _node_left(PARTIAL)
    assert not _node_left({"responses": [OK_ITEM, BAD_QUERY]}) and not _node_left(OK_ITEM)
    assert not _node_left(None) and not _node_left("node_not_connected_exception")


def test_an_msearch_a_node_left_is_sent_once_more_and_its_second_answer_kept():
    call = calls.msearch([{"index": "p"}, {"query": {"match_all": {}}}])
    again = {"responses": [OK_ITEM, OK_ITEM]}
    got, sent = drive(_read(call), [{"responses": [OK_ITEM, NODE_LEFT_ITEM]}, again])
    assert got is again and sent == [call, call]


def test_once_only_and_never_for_other_failures():
    call = calls.search("p", {"query": {"match_all": {}}})
    still = {"responses": [NODE_LEFT_ITEM]}
    got, sent = drive(_read(call), [{"responses": [NODE_LEFT_ITEM]}, still])
    assert got is still and len(sent) == 2                 # a cluster that keeps failing says so
    for answer in (OK_ITEM, {"responses": [BAD_QUERY]}):
        got, sent = drive(_read(call), [answer])
        assert got is answer and len(sent) == 1


def test_a_raised_node_left_error_is_retried_and_others_raise():
    call = calls.search("p", {"query": {"match_all": {}}})
    got, sent = drive(_read(call), [TransportError(500, "search_phase_execution_exception", NODE_LEFT_ITEM), OK_ITEM])
    assert got is OK_ITEM and len(sent) == 2
    with pytest.raises(TransportError):
        drive(_read(call), [TransportError(400, "search_phase_execution_exception", BAD_QUERY)])


def test_a_probe_search_a_node_left_is_sent_again_instead_of_meaning_no_hybrid():
    """Capabilities are found once per searcher: a node lost during the probe must not leave it
    believing the cluster cannot run the hybrid query."""
    from query_builder.fusion_probe import _hybrid_runs

    lost = TransportError(500, "search_phase_execution_exception", NODE_LEFT_ITEM)
    answered = {"_shards": {"total": 3}, "hits": {"hits": []}}
    (ran, why, shards), sent = drive(_hybrid_runs("p", "probe-pipeline", False), [lost, answered])
    assert (ran, why, shards) == (True, "", 3) and len(sent) == 2 and sent[0] == sent[1]
