//! The `Store` contract, checked once and run against both backends.
//!
//! Every check is an `async fn check_xxx(store: Arc<dyn Store>)` in a submodule by area; the
//! `conformance!` macro turns each into two tests, `embedded::xxx` (a fresh redb file in a
//! temporary directory) and `etcd::xxx` (a fresh real etcd started by `skiff-testkit`).
//! Checks only rely on relative revisions: etcd starts at 1, the embedded store may not.

#[path = "conformance/compaction.rs"]
mod compaction;
#[path = "conformance/concurrency.rs"]
mod concurrency;
#[path = "conformance/lease.rs"]
mod lease;
#[path = "conformance/reads.rs"]
mod reads;
#[path = "conformance/support.rs"]
mod support;
#[path = "conformance/txn.rs"]
mod txn;
#[path = "conformance/watch.rs"]
mod watch;

/// Generates `embedded::$name` and `etcd::$name` for every `$name => module::check` pair.
macro_rules! conformance {
    ($($name:ident => $module:ident :: $check:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::support::run_embedded(stringify!($name), crate::$module::$check).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::support::run_etcd(stringify!($name), crate::$module::$check).await;
                }
            )*
        }
    };
}

conformance! {
    // reads
    get_returns_one_key_with_its_bookkeeping => reads::check_get_returns_one_key_with_its_bookkeeping,
    prefix_range_returns_only_keys_under_the_prefix_in_order => reads::check_prefix_range_returns_only_keys_under_the_prefix_in_order,
    paginated_range_walks_every_key_once_at_one_revision => reads::check_paginated_range_walks_every_key_once_at_one_revision,
    count_only_counts_without_returning_keys => reads::check_count_only_counts_without_returning_keys,
    read_at_past_revision_sees_old_values_and_deleted_keys => reads::check_read_at_past_revision_sees_old_values_and_deleted_keys,
    read_at_future_revision_is_refused => reads::check_read_at_future_revision_is_refused,
    // transactions and guarded writes
    create_only_succeeds_when_the_key_is_absent => txn::check_create_only_succeeds_when_the_key_is_absent,
    update_is_compare_and_swap_on_mod_revision => txn::check_update_is_compare_and_swap_on_mod_revision,
    delete_is_compare_and_delete => txn::check_delete_is_compare_and_delete,
    txn_success_branch_applies_all_ops_at_one_revision => txn::check_txn_success_branch_applies_all_ops_at_one_revision,
    txn_failure_branch_runs_when_any_compare_fails => txn::check_txn_failure_branch_runs_when_any_compare_fails,
    txn_compares_every_target_and_operator => txn::check_txn_compares_every_target_and_operator,
    read_only_or_no_op_txn_does_not_move_the_revision => txn::check_read_only_or_no_op_txn_does_not_move_the_revision,
    recreated_key_restarts_create_revision_and_version => txn::check_recreated_key_restarts_create_revision_and_version,
    duplicate_key_in_a_branch_is_invalid_and_writes_nothing => txn::check_duplicate_key_in_a_branch_is_invalid_and_writes_nothing,
    oversize_write_is_refused_naming_the_key_and_writes_nothing => txn::check_oversize_write_is_refused_naming_the_key_and_writes_nothing,
    write_just_under_the_size_limit_succeeds => txn::check_write_just_under_the_size_limit_succeeds,
    // watch
    watch_from_revision_replays_exactly_the_later_changes => watch::check_watch_from_revision_replays_exactly_the_later_changes,
    watch_from_zero_sees_only_new_changes => watch::check_watch_from_zero_sees_only_new_changes,
    watch_sees_only_keys_under_its_prefix => watch::check_watch_sees_only_keys_under_its_prefix,
    watch_delete_event_carries_prev_kv => watch::check_watch_delete_event_carries_prev_kv,
    watch_delivers_txn_writes_with_one_revision => watch::check_watch_delivers_txn_writes_with_one_revision,
    // leases
    lease_grant_attaches_keys_to_the_lease => lease::check_lease_grant_attaches_keys_to_the_lease,
    keep_alive_keeps_leased_keys_past_the_ttl => lease::check_keep_alive_keeps_leased_keys_past_the_ttl,
    revoke_deletes_leased_keys_with_delete_events => lease::check_revoke_deletes_leased_keys_with_delete_events,
    expired_lease_deletes_keys_with_delete_events => lease::check_expired_lease_deletes_keys_with_delete_events,
    unknown_lease_is_lease_not_found_and_writes_nothing => lease::check_unknown_lease_is_lease_not_found_and_writes_nothing,
    // compaction
    compacted_revisions_are_unreadable_and_latest_values_survive => compaction::check_compacted_revisions_are_unreadable_and_latest_values_survive,
    compact_at_or_below_last_compaction_or_in_future_is_refused => compaction::check_compact_at_or_below_last_compaction_or_in_future_is_refused,
    watch_from_compacted_revision_fails_then_ends => compaction::check_watch_from_compacted_revision_fails_then_ends,
    watch_from_compaction_revision_works => compaction::check_watch_from_compaction_revision_works,
    running_watch_keeps_delivering_across_compaction => compaction::check_running_watch_keeps_delivering_across_compaction,
    // concurrency
    concurrent_cas_has_exactly_one_winner_per_round => concurrency::check_concurrent_cas_has_exactly_one_winner_per_round,
    concurrent_cas_loses_no_increment => concurrency::check_concurrent_cas_loses_no_increment,
    many_watchers_see_every_acknowledged_write_once_in_order => concurrency::check_many_watchers_see_every_acknowledged_write_once_in_order,
    watch_started_during_writes_sees_exactly_the_later_writes => concurrency::check_watch_started_during_writes_sees_exactly_the_later_writes,
}
