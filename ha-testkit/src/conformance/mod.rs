//! The conformance suite: every rule that must hold the same on every backend.
//!
//! Cases are plain `pub async fn case(ctx: Ctx)` functions grouped by capability
//! (election, retrieval, fencing, state-handle store, checkpoint store, counter,
//! job-graph store, job-result store, cleanup). A backend crate runs all of them with
//! one line in `tests/conformance.rs`:
//!
//! ```ignore
//! ha_testkit::conformance_suite!(my_backend::tests::harness());
//! ```
//!
//! which expands to one named `#[tokio::test]` per case. Each case gets a fresh random
//! cluster-id and payload directory, is bounded in time, and is cleaned up after, even
//! when it fails.

// Cases are tests: a failed step should panic with its location.
#![allow(clippy::unwrap_used)]

pub mod checkpoints;
pub mod cleanup;
pub mod counter;
pub mod election;
pub mod fencing;
pub mod job_graphs;
pub mod job_results;
pub mod retrieval;
pub mod store;
mod util;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Ctx, Harness};

/// No case may take longer than this.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one case with a fresh context and cleans up after it, re-raising its panic.
pub async fn run<F, Fut>(harness: Arc<dyn Harness>, name: &str, case: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = Ctx::new(harness, name);
    let outcome = tokio::spawn(tokio::time::timeout(CASE_TIMEOUT, case(ctx.clone()))).await;
    ctx.cleanup().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("conformance case `{name}` timed out after {CASE_TIMEOUT:?}"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("conformance case `{name}` was cancelled: {e}"),
    }
}

/// The one list of every case, grouped: `$m! { $($args)* ; group { case, … } … }`.
/// [`CASES`], [`run_all`] and the exported [`conformance_suite!`] are all generated
/// from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    ($m:path ; $($args:tt)*) => {
        $m! { $($args)* ;
            election {
                single_contender_is_granted, one_leader_at_a_time, graceful_handover,
                crash_handover_after_lease, components_share_one_term,
                later_terms_have_higher_epochs, self_heals_deleted_leader_information,
                self_heals_corrupt_leader_information, no_action_after_deadline,
                lists_participants, observer_sees_every_leader, hand_off_to_named_participant,
            }
            retrieval {
                sees_only_confirmed_leaders, follows_handover, starts_with_current_leader,
                corrupt_record_reads_as_no_leader,
            }
            fencing { stale_leader_rejected_by_every_store, crashed_leader_rejected_after_handover }
            store {
                add_get_list, refuses_names_that_are_not_one_segment, add_existing_is_already_exists, replace_is_compare_and_set,
                multi_owner_locks, locks_end_with_owner_session, garbage_entry_is_quarantined_not_fatal,
            }
            checkpoints {
                retention_and_subsume_order, recovery_in_id_order, quarantine_corrupt_and_missing,
                acknowledged_checkpoint_survives_failover, shutdown_semantics,
                retry_of_landed_add_is_idempotent, retention_holds_across_leaders,
                subsumed_entry_locked_by_crashed_process_is_removed_later,
                missing_storage_is_an_error_not_quarantine, never_subsumes_the_checkpoint_just_added,
                terminal_shutdown_reports_entries_still_locked, fail_policy_refuses_fallback,
                retained_on_cancel_when_configured,
            }
            counter {
                starts_at_one_and_increments, strictly_increasing_under_16_tasks, set_count_and_shutdown,
                set_count_never_goes_backwards,
            }
            job_graphs { put_recover_replace_remove, locks_prevent_removal }
            job_results {
                dirty_to_clean, new_leader_finishes_cleanup, cleanup_marks_clean_only_when_nothing_is_left,
                delete_on_commit_bounds_the_store,
            }
            cleanup { leaves_nothing, leaves_nothing_while_contending }
        }
    };
}

macro_rules! order {
    (; $($group:ident { $($case:ident),* $(,)? })*) => {
        /// Every case, as `(group, name)` pairs, in the order [`run_all`] and
        /// [`conformance_suite!`](crate::conformance_suite) run them.
        pub const CASES: &[(&str, &str)] = &[$($((stringify!($group), stringify!($case)),)*)*];
    };
}
crate::__conformance_case_list!(order;);

/// Runs every case one after another against one `harness`, for checks over a whole
/// suite run (e.g. which API requests a backend made in all of them). Panics at the
/// first failing case.
pub async fn run_all(harness: Arc<dyn Harness>) {
    macro_rules! all {
        (; $($group:ident { $($case:ident),* $(,)? })*) => {
            $($(
                run(harness.clone(), concat!(stringify!($group), "::", stringify!($case)), $group::$case).await;
            )*)*
        };
    }
    crate::__conformance_case_list!(all;);
}

/// Expands to one `#[tokio::test]` per conformance case, named `<group>::<case>`,
/// each running against the harness built by `$harness` (an expression evaluated once
/// per test; items of the calling module are in scope). The calling crate needs
/// `tokio` (features `macros`, `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::__conformance_case_list!($crate::conformance_cases; $harness);
    };
}

/// Implementation detail of [`conformance_suite!`]: a module per group, a test per case.
#[doc(hidden)]
#[macro_export]
macro_rules! conformance_cases {
    ($harness:expr; $($group:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $group {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let harness: ::std::sync::Arc<dyn $crate::Harness> = ::std::sync::Arc::new($harness);
                        $crate::conformance::run(
                            harness,
                            concat!(stringify!($group), "::", stringify!($case)),
                            $crate::conformance::$group::$case,
                        )
                        .await;
                    }
                )*
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_case_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for case in super::CASES {
            assert!(seen.insert(case), "{case:?} listed twice");
        }
        assert!(super::CASES.len() >= 40);
    }
}
