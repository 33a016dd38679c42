"""The noisy neighbour (`python -m loadtest noisy --short`) on the three-node cluster: a tenant with a low
quota floods both servers with many times its quota while another runs the Double 11 mix at a steady rate,
first alone and then under the flood, in one run. The flood is refused (RESOURCE_EXHAUSTED) more often
than served and no more of it is served than the quota allows, the victim's ledger passes the check, its
error rate stays about zero and its p99 within a bound.

The p99 bound is generous on purpose: 5 times the victim's own p99 without the flood, but never under
2.5 s, because the test shares two cores with whatever else runs, the flooder's own client among them
(unpaced, its callers spun on refusals that come back at once, 600-700 calls a second, and that CPU, not
the servers, raised the victim's p99 to 1.7-2.8 s in four CI runs; it is paced now), and a one-off stall
is noise there, not a quota that failed. A quota that did not protect the victim would
queue its calls behind hundreds of flooding ones and show as timeouts (its error rate) and p99s of
seconds, which this bound catches."""

from __future__ import annotations

from pathlib import Path

from loadtest import noisy
from loadtest.cluster import SERVERS
from tests.backends import ON_THE_CLUSTER
from tests.cassandra_node import CLUSTER_KEYSPACE

pytestmark = ON_THE_CLUSTER

P99_FACTOR_MAX = 5.0
P99_FLOOR_MS = 2_500.0
# The flooder's phase is timed by its own clock, a little off the token buckets' seconds.
QUOTA_SLACK = 1.1
VICTIM_ERROR_RATE_MAX = 0.01  # one call in a hundred: the flooded phase sends about 150


def test_a_flood_far_above_its_quota_leaves_the_other_tenant_within_its_bounds(
    cluster: None, tmp_path: Path
) -> None:
    outcome = noisy.run_noisy(noisy.SHORT, workers=2, output_dir=tmp_path, keyspace=CLUSTER_KEYSPACE)
    document = outcome.document
    summary = noisy.summary(document)
    assert outcome.passed, f"{document['check']}\n{summary}"
    flooder = document["flooder"]
    answers = flooder["answers"]
    # The flood was over its quota (more refused than served) and the quota held: no more served than the
    # token buckets of the servers allow (rate x time + burst, each), whatever rate this machine's client
    # could send at (its pace, or less on a loaded machine: 47/s in one CI run).
    assert answers.get("RESOURCE_EXHAUSTED", 0) > answers.get("OK", 0), summary
    quota = noisy.FLOOD_QUOTA
    served_max_per_s = SERVERS * (quota.requests_per_s + quota.burst_requests / noisy.SHORT.phase_s)
    assert flooder["ok_per_s"] <= served_max_per_s * QUOTA_SLACK, summary
    alone, flooded = document["victim"]["alone"], document["victim"]["flooded"]
    assert alone["ok"] > 0 and flooded["ok"] > 0, summary
    assert flooded["error_rate"] <= VICTIM_ERROR_RATE_MAX, summary
    assert flooded["p99_ms"] <= max(P99_FACTOR_MAX * alone["p99_ms"], P99_FLOOR_MS), summary
    assert outcome.json_path.exists()
