//! Helpers for backend implementors: the small rules every backend needs, written
//! once (in the spirit of object_store's `client` module).
//!
//! - [`counter`]: the checkpoint-id counter's stored form (decimal text, readable with
//!   any CLI);
//! - [`request`]: how a request without a definite answer is reported (a read changed
//!   nothing: `Unavailable`; a write may have been applied: `OutcomeUnknown`), and
//!   requests under a deadline;
//! - [`names`]: the rule for state-handle entry names (one key segment);
//! - [`tls`]: the TLS file options (`tls.ca-cert`, `tls.client-cert`,
//!   `tls.client-key`) of a backend's config section, and reading their PEM files.

pub mod counter;
pub mod names;
pub mod request;
pub mod tls;

pub use counter::{decode_counter, encode_counter};
pub use names::check_entry_name;
pub use request::{bounded, timed_out, unanswered, within, Delivery, NoReply};
pub use tls::{TlsFiles, TlsPem, TlsRules};
