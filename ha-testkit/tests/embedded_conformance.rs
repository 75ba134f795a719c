//! The whole conformance suite on the embedded backend.

#![allow(clippy::unwrap_used)]

use ha_testkit::EmbeddedHarness;

ha_testkit::conformance_suite!(EmbeddedHarness::default());
