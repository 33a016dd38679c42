"""Every bound of the system, in one place (TigerBeetle style: a limit on each loop, queue, page, batch).

Names end in the unit or in `_max`/`_min`. Configuration may lower a bound; nothing may raise one above
the value here without changing this file.
"""

from __future__ import annotations

# gRPC transport
message_size_max_bytes = 8 * 1024 * 1024
concurrent_streams_max = 1024
server_threads_max = 16
deadline_default_ms = 10_000
deadline_max_ms = 60_000
shutdown_grace_max_ms = 30_000
ping_payload_max_bytes = 1024
metadata_value_max_bytes = 4096
# Servers of the cluster one server keeps a channel open to, for forwarded calls.
forward_channels_max = 64

# Errors (AIP-193): a status, its message repeated in `grpc-message` (percent-encoded, up to 3 bytes per
# byte) and its details in `grpc-status-details-bin` (base64), stays well under gRPC's 8 KiB metadata
# limit: at worst 3 * 512 + 4/3 * (512 + 10 * 2 * 100 + 4 * 100 + overhead) < 6 KiB.
error_message_bytes_max = 512
# BadRequest lists the first violations; the message counts the others.
error_field_violations_max = 10
# A violation's field path and description, and an ErrorInfo metadata value, each.
error_text_bytes_max = 100
error_metadata_entries_max = 4
# Characters of a request's own value repeated in an error (`echo`).
error_echo_length_max = 32

# Tenancy
tenant_id_length_max = 40
display_name_length_max = 200
tenants_max = 10_000
api_keys_per_tenant_max = 100
quota_requests_per_s_max = 100_000
quota_burst_requests_max = 100_000
quota_concurrent_calls_max = 10_000
auth_cache_entries_max = 100_000
auth_cache_ttl_ms_max = 60_000
quota_buckets_max = tenants_max
retry_after_max_ms = 60_000
catalogue_files_max = 10_000
catalogue_file_size_max_bytes = 64 * 1024

# Telemetry: label sets (method, tenant, status code) of the per-call metrics; past it calls count under an
# overflow label set. Below OpenTelemetry's default cardinality limit (2,000 points an instrument).
metric_label_sets_max = 1_000

# Paging (AIP-158)
page_size_default = 50
page_size_max = 500
page_token_length_max = 1024

# Idempotency (AIP-155)
request_id_length_max = 64
request_log_ttl_s = 7 * 24 * 3600
# Claims of one partition (a bucket of a bucketed claim table) in one conditional batch.
claim_batch_rows_max = 200
# Rounds of one `claim_all`: a bucket's batch that failed on some of its ids (claimed before) goes again
# without them; only claims racing in between need a third.
claim_rounds_max = 8
# Reads of an earlier claim table one `claim_all` has in flight at once.
claim_earlier_reads_max = 64

# Storage contract
batch_rows_max = 1000
batch_bytes_max = 4 * 1024 * 1024
# A bulk put (derived rows of many partitions, `storage/contract/bulk.py`): rows and bytes of values.
storage_bulk_put_rows_max = 4096
storage_bulk_put_bytes_max = 4 * 1024 * 1024
storage_page_rows_max = 5000
# Pages of every tenant's row (`tenants_max` of them) one scan reads (data migrations).
tenant_pages_max = tenants_max // storage_page_rows_max + 1
row_ttl_s_max = 20 * 365 * 24 * 3600
key_component_length_max_bytes = 1024
storage_timeout_ms_max = 120_000
storage_pool_connections_max = 64
# Unconditional batches one `write_all` has in flight at once.
storage_writes_in_flight_max = 64
# Batches one `write_each` takes (a BatchCreateTransfers' request-id claims); callers cut longer lists.
storage_write_each_batches_max = 1000
# Read statement texts and column lists a backend keeps, built once per table (and page shape) and looked
# up after that (storage/sqlite/sql.py, storage/cassandra/cql.py): building a row read's text took 23 µs,
# against about 8 µs to run it on SQLite.
storage_read_texts_max = 1024
migration_files_max = 1000
# Reads and re-sends that resolve a conditional write whose answer was lost (storage/contract/unknown.py).
cas_unknown_retries_max = 3

# Telemetry
log_field_length_max = 2048

# Cassandra backend
cassandra_requests_in_flight_max = 1024
cassandra_prepared_statements_max = 512
# The statements and bytes of values in one UNLOGGED batch of the writes that follow a commit (the
# journal): under Cassandra's batch_size_warn_threshold (5 KiB) and the node's
# unlogged_batch_across_partitions_warn_threshold (scripts/cassandra/cassandra.yaml.in).
cassandra_following_statements_max = 32
cassandra_following_bytes_max = 4000
migration_statements_per_file_max = 200

# SQLite backend (storage/sqlite)
sqlite_queued_writes_max = 1024
sqlite_queued_reads_max = 1024
ttl_sweep_rows_max = 10_000
storage_tables_max = 1000
# Memory backend (storage/memory): a partition's sorted clustering keys are kept in chunks this long.
memory_keys_chunk_max = 1000
migration_sets_max = 16
migration_file_size_max_bytes = 1024 * 1024

# Load tests (loadtest/)
bench_ops_per_worker_max = 10_000_000

# Payments ledger
ledger_shards_max = 1024
ledger_group_commit_max = 512
ledger_shard_queue_max = 100_000
ledger_recent_transfers_max = 100_000
# Refund tallies, and closed holds and escrows, a shard's owner keeps in memory (the latest it used or
# closed; the others it reads when needed).
ledger_recent_tallies_max = 100_000
ledger_recent_closed_max = 10_000
ledger_shard_lease_ms_min = 200
ledger_shard_lease_ms_max = 600_000
ledger_inbox_poll_ms_max = 10_000
binary_search_steps_max = 64
# Payments orchestration (payments/ledger.py): how long a call waits for its transfer's cross-shard
# credits to land before it answers from storage.
ledger_completion_wait_s = 2.0

# Shard runtime (shards/): a group commit's rows, a shard's rows read at recovery, shards one process
# owns, messages applied a shard remembers, inbox rows applied per poll.
shard_batch_rows_max = 900
shard_recovery_rows_max = 10_000_000
shard_actors_max = 100_000
shard_recent_markers_max = 100_000
shard_inbox_rows_max = 500
# Settles of landed outbox entries a shard keeps waiting to ride its next group commit (past this, each
# is queued as a command of its own).
shard_settles_waiting_max = 10_000
# Acquiring: conditional writes of a contended epoch; leases held elsewhere waited out.
shard_acquire_attempts_max = 8
# With several server processes on a machine (`jubao-server serve`, one per core), each takes its home shards
# of a scope when it meets it; for this long the others leave those shards to it.
shard_home_grace_ms = 5_000
shard_lease_waits_max = 3
# Stopping an owner waits this long for its tasks; its upkeep sweeps about this often.
shard_stop_timeout_s = 10.0
shard_upkeep_interval_s = 1.0
# Cross-shard delivery: attempts with exponential backoff; polls for the markers of messages left in
# another process's inbox (`inbox_poll_ms` apart); how long stopping waits for deliveries in flight.
delivery_attempts_max = 6
delivery_backoff_s = 0.05
delivery_inbox_polls_max = 40
delivery_wait_s = 2.0

# Payments API
transfer_legs_max = 16
transfer_memo_length_max = 200
hold_expiry_max_ms = 30 * 24 * 3600 * 1000
escrow_window_max_ms = 90 * 24 * 3600 * 1000
batch_transfers_max = 1000

# SQLite group commit (storage/sqlite/group.py): one transaction takes at most this many queued batches
# and, past the first batch, at most this many rows.
sqlite_group_commit_batches_max = 256
sqlite_group_commit_rows_max = 10_000
# Rows in one statement of the SQLite writer, an upsert or a read of the rows a batch's conditions name
# (storage/sqlite/rows.py): a power of two.
sqlite_statement_rows_max = 64
sweep_commands_max = 1000
# The WAL is checkpointed at least this often while commits come (storage/sqlite/checkpoint.py).
sqlite_checkpoint_interval_ms_max = 60_000
# Past this many frames (pages, 4 KiB each by default) the writer starts the WAL again from its beginning,
# between two groups, waiting at most sqlite_wal_restart_wait_ms_max for readers of older snapshots; the WAL
# file is cut back to this size when it starts again (storage/sqlite/checkpoint.py).
sqlite_wal_frames_max = 16_384
sqlite_wal_restart_wait_ms_max = 100
# The writer connection's page cache (`SqliteSettings.writer_cache_mib`, storage/sqlite/connections.py).
sqlite_writer_cache_mib_max = 16_384

# Ledger reconciliation (payments/reconcile.py): an audit reads a tenant's shards and journals page by
# page; a pass only counts when no shard committed while it ran.
reconcile_page_rows_max = 1000
reconcile_shard_rows_max = 10_000_000
reconcile_entries_per_account_max = 100_000_000
reconcile_passes_max = 5
reconcile_journals_concurrency_max = 32
# How long journal rows may trail their commit before a short journal is reported.
reconcile_entries_settle_s = 0.05
# WatchEvents: a read takes at most this many events per shard; a stream ends after this long (the
# client resumes from its cursor), and without new commits it reads again this often.
events_per_shard_max = 500
events_stream_max_s = 3600
events_poll_s = 0.25
events_heartbeat_s = 5.0

# A Reconcile answer lists at most this many discrepancies (and counts the rest).
reconcile_discrepancies_listed_max = 1000

# Bulk plane (bulk/): Arrow Flight uploads and downloads, their storage and their apply.
bulk_batch_id_length_max = 64
# One DoPut message (a record batch): rows and Arrow bytes; a message over them is refused whole.
bulk_message_rows_max = 65_536
bulk_message_bytes_max = 16 * 1024 * 1024
# One upload: rows and Arrow bytes received (accepted and refused alike).
bulk_upload_rows_max = 1_000_000
bulk_upload_bytes_max = 1024 * 1024 * 1024
# A stored chunk of accepted rows (Arrow IPC): bytes and rows; its results stay under batch_bytes_max. A chunk
# is also the unit of apply progress: a server that dies applying one leaves at most its rows to be retried.
bulk_chunk_bytes_max = 1024 * 1024
bulk_chunk_rows_max = 1024
# Stored chunks one read brings into memory at once.
bulk_chunks_per_read_max = 4
# Uploads and their rows are kept this long (uploads must commit and apply within it).
bulk_upload_ttl_s = 7 * 24 * 3600
# Rows one apply call hands the product (payments: one BatchCreateTransfers).
bulk_apply_rows_max = batch_transfers_max
# A result's message, cut to this many bytes.
bulk_result_message_bytes_max = 200
# Jobs one poll reads, jobs one server applies at once; uploads ListFlights lists.
bulk_jobs_per_poll_max = 100
bulk_jobs_in_flight_max = 4
bulk_list_flights_max = 1000
bulk_job_lease_ms_min = 1_000
bulk_job_lease_ms_max = 600_000
bulk_job_poll_ms_max = 60_000
# Export: accounts per request, storage pages per Arrow batch, rows per export.
bulk_export_accounts_max = 1000
bulk_export_batch_rows_max = 65_536
bulk_export_rows_max = 100_000_000
# Quotas per tenant in one Flight process.
bulk_streams_per_tenant_max = 256
bulk_bytes_per_s_max = 10 * 1024 * 1024 * 1024
# A server process freezes its heap after start and after each full collection (platform/collector.py);
# this often the frozen heap goes back to the collector, whose next full collection frees the cycles frozen
# meanwhile (measured: about one object a second at half the unary peak) at the cost of one walk of the heap.
gc_frozen_collect_interval_s = 6 * 3600
# gRPC server processes `jubao-server serve` runs on one machine (one per core by default).
server_processes_max = 64
# The supervisor (`jubao-server serve`): restarts of a crashed child, and its backoff.
supervisor_restarts_max = 5
supervisor_backoff_max_s = 30.0
# Fund transfer agency (fundta/): holder shards per fund, and the fund's own bounds.
fundta_holder_shards_max = 1024
fundta_fund_code_length_max = 12
fundta_holidays_max = 400
fundta_fee_tiers_max = 16
# A trade date is found within this many natural days (weekends plus at most fundta_holidays_max).
fundta_calendar_scan_days_max = 2 * fundta_holidays_max + 14
# Shares and money of one order or holding: in hundredths of a share and minor units, well inside int64.
fundta_shares_max = 10**15
fundta_amount_max_minor = 10**15
fundta_id_number_length_max = 32
# Optimistic writes (a holding changed meanwhile) are tried at most this many times.
fundta_write_attempts_max = 8
# Storage pages one ListOrders call reads (across holder shards) before it answers a shorter page.
fundta_list_reads_max = 64
# A day-close: its phases (with a few lost races), the rows of one batch of a holder shard's confirmed
# orders (its positions are one batch of their own), and the storage pages of one holder shard.
fundta_close_steps_max = 16
fundta_close_batch_rows_max = 200
# Holder shards one phase of a day-close works on at once (each holds its shard's positions in memory).
fundta_close_shards_in_flight_max = 8
fundta_shard_pages_max = 10_000
# A holder shard's positions (fundta/segments.py): chunks of Arrow columns, all written in one batch, so
# their bytes stay under batch_bytes_max; a query of one holder reads one chunk, at most this many bytes
# (LZ4: about 6,000 holders of one lot each, so 64 holder shards hold about 6 million holders). A holder's
# chunk is a hash of its key modulo the count: changing the count means rewriting every shard.
fundta_position_chunks = 16
fundta_position_chunk_bytes_max = 240 * 1024
# The previous natural dates a 七日年化 reads (the date itself is the seventh).
fundta_yield_days = 7
# A statement follows the rest of a redemption that large redemption days deferred this many times.
fundta_statement_deferrals_max = 64
# A statement of every fund covers at most this many funds (more: name the fund).
fundta_statement_funds_max = 1000
# The orders of one page, and the index rows of one batch, of the data migration that indexes the orders
# placed before orders wrote their index (fundta/data_migrations.py).
fundta_index_batch_rows_max = 200

# Co-creation (cocreation/): members and datasets of a collaboration, columns and rule entries of a dataset,
# rows of a dataset, how far ahead a collaboration may expire, the minimum group size's default and floor.
cocreation_members_max = 32
cocreation_datasets_max = 64
cocreation_columns_max = 64
cocreation_rule_entries_max = 64
cocreation_dataset_rows_max = 10_000_000
cocreation_expire_ahead_s_max = 366 * 24 * 3600
cocreation_min_group_size_default = 100
cocreation_min_group_size_min = 2
# Chunks (of at most bulk_chunk_bytes_max) one read brings into memory when a dataset's rows are read: a
# Cassandra node answers a read whole (the driver does not page), and on a 2-core machine one of 64 chunks
# took 17.6 s where the same 90 chunks in reads of 16 took 1.4 s (reads of 256 ran past the 10 s timeout).
cocreation_chunks_per_read_max = 16
# Rows of one stored chunk of a dataset (and bulk_chunk_bytes_max of Arrow IPC).
cocreation_chunk_rows_max = 65_536
# A query: datasets joined, filters, values per filter, group-by columns, aggregates; rows it reads (all its
# datasets' together) and groups it answers: at most `cocreation_result_inline_groups_max` in the RunQuery
# response, more kept as Arrow IPC chunks of at most `cocreation_chunk_rows_max` rows for
# `cocreation_result_ttl_s` and downloaded over Arrow Flight.
cocreation_query_datasets_max = 4
cocreation_query_filters_max = 16
cocreation_filter_values_max = 100
cocreation_query_group_by_max = 8
cocreation_query_aggregates_max = 16
cocreation_query_rows_max = 40_000_000
cocreation_result_groups_max = 1_000_000
cocreation_result_inline_groups_max = 1_000
cocreation_result_ttl_s = 24 * 3600
cocreation_query_threads_max = 64
# A model (cocreation/training.py): its features, the levels of a categorical feature, the solver's
# iterations, the rows of a join it trains on or scores.
cocreation_model_features_max = 16
cocreation_model_levels_max = 64
cocreation_model_iterations_max = 100
cocreation_model_rows_max = 10_000_000
# A training's lease on its model (renewed a third of the way through: a server that stopped leaves a
# RUNNING model whose lease lapses, and the next call that reads it resumes it) and the runs a model may
# start before it fails as TRAINING_INTERRUPTED (a training that keeps stopping its server is not retried
# forever).
cocreation_model_lease_ms_default = 30_000
cocreation_model_lease_ms_min = 100
cocreation_model_lease_ms_max = 600_000
cocreation_model_runs_max = 3
# The expiry sweep: collaborations one pass handles, and the longest interval between passes.
cocreation_expiries_per_sweep_max = 100
cocreation_expiry_sweep_s_max = 3600
# Differential privacy (cocreation/privacy.py), epsilon in millionths: a member's budget, a query's cost (its
# floor bounds the spends of one member's budget: a budget partition's rows), one person's rows in a dataset.
cocreation_budget_epsilon_micro_max = 100_000_000
cocreation_query_epsilon_micro_min = 1_000
cocreation_rows_per_join_key_max = 1_000
# Attempts to spend from a budget that another query of the same member spent from meanwhile.
cocreation_spend_attempts_max = 8
