"""Every bound of the load-test harness (the server's own live in `jubao_server.limits`).

Names end in the unit or in `_max`/`_min`, like the server's.
"""

from __future__ import annotations

from typing import Final

# Scenario files
scenario_file_size_max_bytes: Final = 64 * 1024
phases_max: Final = 32
run_duration_max_s: Final = 3 * 3600
rate_max_per_s: Final = 100_000
customers_max: Final = 100_000
merchants_max: Final = 10_000
batch_size_max: Final = 1_000
settle_after_max_s: Final = 3600
deadline_max_ms: Final = 120_000
amount_max_minor: Final = 10**12
funding_max_minor: Final = 10**15

# Workers and their loops
workers_max: Final = 64
callers_per_worker_max: Final = 1_000
in_flight_per_worker_max: Final = 10_000
ops_per_worker_max: Final = 50_000_000
follow_ups_per_worker_max: Final = 1_000_000
worker_start_timeout_s: Final = 120.0
# An open loop wakes at least this often, so a follow-up that falls due between two arrivals is sent on time.
schedule_tick_s: Final = 0.02

# Unknown outcomes (a timeout, UNAVAILABLE): the same request is sent again, with its request id, until its
# answer is known, for `resolve_for_max_s` at most: a bank's client keeps asking through an outage, and a
# chaos run's outage lasts minutes on a busy machine (CI once went 6 minutes without a successful call).
# `resolve_attempts_max` bounds the loop; at the backoff's maximum the time runs out long before it.
resolve_for_max_s: Final = 1_200.0
resolve_attempts_max: Final = 1_000
resolve_backoff_initial_s: Final = 0.2
resolve_backoff_max_s: Final = 5.0
unresolved_per_worker_max: Final = 100_000

# find-peak
peak_steps_max: Final = 40
peak_refine_steps_max: Final = 8

# Setup and the post-run read-back
setup_concurrency_max: Final = 64
readback_concurrency_max: Final = 16
readback_pages_per_account_max: Final = 100_000
readback_account_pages_max: Final = 10_000
settle_polls_max: Final = 120
settle_poll_s: Final = 0.5
problems_listed_max: Final = 20
# The seconds of a paced load listed with its longest stall (the slowest first), to find what stalled.
slowest_seconds_listed_max: Final = 5

# Latency histograms: 1 us to 2 minutes, 3 significant digits.
latency_min_us: Final = 1
latency_max_us: Final = 120_000_000
latency_digits: Final = 3
# The investors of a run's fund (fundta_purchase orders pick one at random).
fundta_investors: Final = 200
