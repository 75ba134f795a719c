//! Property tests of the parsers that read untrusted input: config documents, flat
//! config entries, pointers and leader records. No input may panic; every error names
//! what it is about.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ha_core::storage::StateHandle;
use ha_core::{BackendRegistry, Error, HaConfig, LeaderInformation};
use proptest::prelude::*;

const CORE_KEYS: [&str; 4] = [
    "high-availability.type",
    "high-availability.cluster-id",
    "high-availability.storageDir",
    "state.checkpoints.num-retained",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(CORE_KEYS.to_vec()).prop_map(String::from),
        "high-availability\\.[a-zA-Z.-]{1,20}",
        "high-availability\\.embedded\\.[a-z-]{1,16}",
        "[a-z]{1,8}\\.[a-z.-]{1,12}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "-?[0-9]{1,22}",
        prop::sample::select(vec![
            "embedded",
            "zookeeper",
            "",
            "memory://x",
            "file:///tmp/x",
            "1 s",
            "-5"
        ])
        .prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yaml_documents_never_panic(text in "\\PC{0,200}") {
        if let Err(e) = HaConfig::from_yaml_str("fuzz.yaml", &text) {
            prop_assert!(matches!(e, Error::InvalidConfig { .. }), "{e}");
        }
    }

    #[test]
    fn toml_documents_never_panic(text in "\\PC{0,200}") {
        if let Err(e) = HaConfig::from_toml_str("fuzz.toml", &text) {
            prop_assert!(matches!(e, Error::InvalidConfig { .. }), "{e}");
        }
    }

    #[test]
    fn structured_yaml_never_panics(entries in prop::collection::btree_map(key(), value(), 0..8)) {
        let text: String = entries.iter().map(|(k, v)| format!("{k}: {v:?}\n")).collect();
        let _ = HaConfig::from_yaml_str("fuzz.yaml", &text);
    }

    #[test]
    fn config_errors_name_a_key(entries in prop::collection::btree_map(key(), value(), 0..8)) {
        let result = HaConfig::from_entries(entries.clone())
            .and_then(|c| BackendRegistry::with_builtin().validate(&c).map(|_| c));
        if let Err(e) = result {
            match &e {
                Error::InvalidConfig { key, .. } => {
                    prop_assert!(entries.contains_key(key) || CORE_KEYS.contains(&key.as_str()),
                        "error names `{key}`, which is neither given nor a core key: {e}");
                }
                other => prop_assert!(false, "unexpected error kind: {other}"),
            }
        }
    }

    #[test]
    fn pointers_never_panic_and_name_the_key(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = StateHandle::from_bytes("checkpointID-0000000000000000042", &bytes) {
            prop_assert!(matches!(e, Error::CorruptData { .. }), "{e}");
            prop_assert!(e.to_string().contains("checkpointID-0000000000000000042"));
        }
    }

    #[test]
    fn json_shaped_pointers_never_panic(
        format in any::<u32>(), path in "[ -~]{0,30}", size in any::<u64>(), sha in "[0-9a-fA-Fxz]{0,70}",
        extra in prop::option::of("[a-z]{1,5}"),
    ) {
        let mut obj = serde_json::json!({"format": format, "path": path, "size": size, "sha256": sha});
        if let Some(x) = extra { obj[x] = serde_json::json!(1); }
        let bytes = serde_json::to_vec(&obj).unwrap();
        match StateHandle::from_bytes("k", &bytes) {
            Ok(h) => {
                prop_assert_eq!(h.format, 1);
                prop_assert_eq!(h.sha256.len(), 64);
                prop_assert_eq!(StateHandle::from_bytes("k", &h.to_bytes()).unwrap(), h);
            }
            Err(e) => prop_assert!(matches!(e, Error::CorruptData { .. }), "{e}"),
        }
    }

    #[test]
    fn leader_records_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = LeaderInformation::from_json("leader/dispatcher", &bytes) {
            prop_assert!(e.to_string().contains("leader/dispatcher"));
        }
    }
}

#[test]
fn flat_entries_with_every_core_key_round_trip() {
    let entries: BTreeMap<String, String> = [
        ("high-availability.type", "embedded"),
        ("high-availability.cluster-id", "c1"),
        ("high-availability.storageDir", "memory://p"),
        ("state.checkpoints.num-retained", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = HaConfig::from_entries(entries).unwrap();
    assert_eq!(cfg.mode(), "embedded");
    assert_eq!(cfg.cluster_id().as_str(), "c1");
    assert_eq!(cfg.storage_dir(), "memory://p");
    assert_eq!(cfg.num_retained(), 4);
}
