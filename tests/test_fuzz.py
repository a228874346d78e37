"""A small schema fuzz in the suite: schemathesis against /openapi.json on a real stack (redis-server,
gunicorn on 127.0.0.1 with a token, a dummy worker, real jobs in every state). Any 5xx, or any
response that is not what the document says (status, content type, headers, body), fails it. The
full run is `bench/fuzz.py` (a few thousand requests); this one sends a few hundred."""
from __future__ import annotations

import copy

import pytest

from bench.fuzz import Fuzzer, Stack, make_jobs

REQUESTS = 600
SEED = 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The stack, and the real ids (jobs in every state, result paths, dataset names)."""
    with Stack(tmp_path_factory.mktemp("fuzz")) as running:
        yield running, make_jobs(running)


def test_fuzz_finds_no_server_error_and_no_spec_violation(stack):
    running, real = stack
    report = Fuzzer(running.base_url, running.token, running.server_log, SEED, echo=lambda *_: None).run(REQUESTS, real)
    assert report.requests >= REQUESTS // 2, report.summary()
    if not report.clean:
        pytest.fail(report.summary(), pytrace=False)


def test_the_checks_see_a_response_the_document_does_not_promise(stack):
    """The fuzz is only as good as its checks: with 404 taken out of the status route's document,
    a request for a job that does not exist must be reported (an undocumented status code)."""
    running, _ = stack
    fuzzer = Fuzzer(running.base_url, running.token, running.server_log, SEED, echo=lambda *_: None)
    document = copy.deepcopy(fuzzer.document)
    del document["paths"]["/dummy/{tracking_id}/status"]["get"]["responses"]["404"]
    fuzzer.load(document)
    operation = fuzzer.schema["/dummy/{tracking_id}/status"]["GET"]
    fuzzer.generate(operation, 3, {"tracking_id": "0" * 32}, _positive())
    checks = {v.check for v in fuzzer.report.violations}
    assert fuzzer.report.requests >= 1 and checks == {"status_code_conformance"}, fuzzer.report.summary()


def _positive():
    from schemathesis.generation import GenerationMode

    return GenerationMode.POSITIVE
