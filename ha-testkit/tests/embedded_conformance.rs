//! The whole conformance suite on the embedded backend.

use ha_testkit::EmbeddedHarness;

ha_testkit::conformance_suite!(EmbeddedHarness::default());
