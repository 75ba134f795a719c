//! Config loading and validation: every error names the key.

use std::collections::BTreeMap;

use super::*;

fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn validated(pairs: &[(&str, &str)]) -> Result<HaConfig> {
    let cfg = HaConfig::from_entries(entries(pairs))?;
    BackendRegistry::with_builtin().validate(&cfg)?;
    Ok(cfg)
}

#[test]
fn defaults_are_embedded() {
    let cfg = validated(&[]).unwrap();
    assert_eq!(cfg.mode(), "embedded");
    assert_eq!(cfg.cluster_id().as_str(), "default");
    assert_eq!(cfg.storage_dir(), DEFAULT_EMBEDDED_STORAGE);
    assert_eq!(cfg.num_retained(), 1);
}

#[test]
fn unknown_mode_names_key_and_valid_values() {
    let err = validated(&[(KEY_TYPE, "zookeper")]).unwrap_err().to_string();
    assert!(err.contains("`high-availability.type`"), "{err}");
    assert!(
        err.contains("unknown mode `zookeper`") && err.contains("valid values: embedded"),
        "{err}"
    );
}

#[test]
fn known_but_unlinked_mode_says_which_crate() {
    let err = validated(&[(KEY_TYPE, "etcd"), (KEY_STORAGE_DIR, "memory://x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ha-etcd"), "{err}");
}

/// A custom backend joining the registry: it reuses the embedded machinery under
/// another mode name.
struct CustomProvider;

#[async_trait::async_trait]
impl BackendProvider for CustomProvider {
    fn mode(&self) -> &'static str {
        "custom"
    }
    fn config_keys(&self) -> &'static [&'static str] {
        &["endpoint"]
    }
    fn validate(&self, config: &HaConfig) -> Result<()> {
        config.backend_options().required("endpoint").map(|_| ())
    }
    async fn connect(&self, config: &HaConfig) -> Result<std::sync::Arc<dyn crate::HaBackend>> {
        let cluster = crate::embedded::EmbeddedCluster::shared(config.cluster_id(), std::time::Duration::from_secs(1));
        Ok(std::sync::Arc::new(cluster.connect()))
    }
}

fn custom_registry() -> BackendRegistry {
    let mut r = BackendRegistry::with_builtin();
    r.register(std::sync::Arc::new(CustomProvider));
    r
}

#[test]
fn an_unregistered_mode_gives_the_recorded_reason() {
    let mut registry = BackendRegistry::with_builtin();
    registry.explain_unregistered(|mode| format!("this build leaves out the cargo feature `{mode}`"));
    let cfg = HaConfig::from_entries(entries(&[(KEY_TYPE, "etcd")])).unwrap();
    let err = registry.validate(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("unknown mode `etcd` (this build leaves out the cargo feature `etcd`)"),
        "{err}"
    );
}

#[test]
fn missing_storage_dir_for_a_remote_mode() {
    let cfg = HaConfig::from_entries(entries(&[(KEY_TYPE, "custom")])).unwrap();
    let err = custom_registry().validate(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("`high-availability.storageDir`") && err.contains("is required"),
        "{err}"
    );
}

#[tokio::test]
async fn custom_backends_join_the_registry() {
    let registry = custom_registry();
    assert_eq!(registry.modes(), vec!["custom", "embedded"]);
    let cfg = HaConfig::from_entries(entries(&[
        (KEY_TYPE, "custom"),
        (KEY_STORAGE_DIR, "memory://custom-test"),
        (KEY_CLUSTER_ID, "custom-registry-test"),
    ]))
    .unwrap();
    let err = registry.validate(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("`high-availability.custom.endpoint`: is required"),
        "{err}"
    );
    let cfg = cfg.with("high-availability.custom.endpoint", "x").unwrap();
    let ha = crate::HaServices::from_config_with(&cfg, &registry).await.unwrap();
    assert_eq!(ha.cluster_id().as_str(), "custom-registry-test");
    ha.close().await.unwrap();
}

#[test]
fn negative_or_zero_retention() {
    for bad in ["-1", "0", "three"] {
        let err = HaConfig::from_entries(entries(&[(KEY_NUM_RETAINED, bad)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`state.checkpoints.num-retained`") && err.contains("positive integer"),
            "{err}"
        );
    }
}

#[test]
fn bad_cluster_id() {
    let err = HaConfig::from_entries(entries(&[(KEY_CLUSTER_ID, "My_Cluster")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`high-availability.cluster-id`"), "{err}");
}

#[test]
fn unknown_keys_in_known_sections_are_rejected() {
    let err = validated(&[("high-availability.embedded.lease", "1 s")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`high-availability.embedded.lease`") && err.contains("lease-duration"),
        "{err}"
    );
    let err = validated(&[("high-availability.storagedir", "x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`high-availability.storagedir`"), "{err}");
    // Keys of other systems sharing the file are left alone.
    validated(&[("taskmanager.numberOfTaskSlots", "4")]).unwrap();
}

#[test]
fn backend_option_errors_name_the_full_key() {
    let err = validated(&[("high-availability.embedded.lease-duration", "soon")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`high-availability.embedded.lease-duration`"), "{err}");
    let err = validated(&[("high-availability.embedded.lease-duration", "5 ms")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 20 ms"), "{err}");
}

#[test]
fn yaml_and_toml_give_the_same_config() {
    let yaml = "high-availability:\n  type: embedded\n  cluster-id: prod\n  storageDir: file:///tmp/ha\nstate.checkpoints.num-retained: 3\n";
    let toml = "[high-availability]\ntype = \"embedded\"\ncluster-id = \"prod\"\nstorageDir = \"file:///tmp/ha\"\n[state.checkpoints]\nnum-retained = 3\n";
    let a = HaConfig::from_yaml_str("a.yaml", yaml).unwrap();
    let b = HaConfig::from_toml_str("b.toml", toml).unwrap();
    assert_eq!(a.entries(), b.entries());
    assert_eq!(a.num_retained(), 3);
    assert_eq!(a.cluster_id().as_str(), "prod");
}

#[test]
fn unparsable_documents_name_the_source() {
    let err = HaConfig::from_yaml_str("broken.yaml", "high-availability: [unclosed")
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.yaml is not valid YAML"), "{err}");
    let err = HaConfig::from_toml_str("broken.toml", "type = ")
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.toml is not valid TOML"), "{err}");
}

#[test]
fn files_by_extension_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ha.yaml");
    std::fs::write(&path, "high-availability.cluster-id: from-file\n").unwrap();
    let cfg = HaConfig::load_with(Some(&path), &BackendRegistry::with_builtin()).unwrap();
    assert_eq!(cfg.cluster_id().as_str(), "from-file");
    let other = dir.path().join("ha.ini");
    std::fs::write(&other, "x").unwrap();
    let err = HaConfig::load_with(Some(&other), &BackendRegistry::with_builtin())
        .unwrap_err()
        .to_string();
    assert!(err.contains("valid extensions: .yaml, .yml, .toml"), "{err}");
    assert_eq!(env_var_for(KEY_CLUSTER_ID), "HA_HIGH_AVAILABILITY_CLUSTER_ID");
    assert_eq!(env_var_for(KEY_NUM_RETAINED), "HA_STATE_CHECKPOINTS_NUM_RETAINED");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let cfg = HaConfig::from_entries(entries(&[
        ("high-availability.storage.aws_secret_access_key", "hunter2-secret"),
        ("high-availability.zookeeper.digest-password", "pa55word"),
        ("high-availability.etcd.password", "pa55word"),
    ]))
    .unwrap();
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("pa55word"), "{shown}");
    assert!(shown.contains("<redacted>"));
    let opts = format!("{:?}", cfg.backend_options());
    assert!(!opts.contains("pa55word"));
}

/// A malformed document must not echo its text in the error: the offending line may
/// carry a credential (toml's own error message quotes it).
#[test]
fn parse_errors_do_not_quote_the_document() {
    let tomls = [
        "high-availability.type = \"etcd\"\nhigh-availability.etcd.password = \"s3cret-pw-1\nx = 1\n",
        "high-availability.etcd.password = s3cret-pw-2\n",
        "high-availability.etcd.password = \"s3cret-pw-3\" trailing\n",
        "[high-availability.etcd]\npassword = 's3cret-pw-4'\npassword = 's3cret-pw-4'\n",
    ];
    for (i, t) in tomls.iter().enumerate() {
        let e = HaConfig::from_toml_str("ha.toml", t).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("ha.toml is not valid TOML at line "), "{e}");
        if i == 0 {
            assert!(e.contains("line 2, column"), "{e}");
        }
    }
    let yamls = [
        "high-availability.type: etcd\nhigh-availability.etcd.password: \"s3cret-yaml-1\n  x: [\n",
        "high-availability.etcd.password: s3cret-yaml-2\n bad: : x\n",
        "high-availability.etcd.password: s3cret-yaml-3\nhigh-availability.etcd.password: s3cret-yaml-3\n",
        "high-availability.etcd.password: [s3cret-yaml-4, {a: b}]\n",
    ];
    for y in yamls {
        let e = HaConfig::from_yaml_str("ha.yaml", y).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}

/// Credentials inside a URL value would be shown wherever the URL is: refused, naming
/// the key and not echoing the value.
#[test]
fn urls_with_passwords_are_refused_without_echo() {
    for (key, value) in [
        ("high-availability.storageDir", "s3://AKIAX:url-s3cret@bucket/ha"),
        (
            "high-availability.etcd.endpoints",
            "http://a:2379, http://root:url-s3cret@b:2379",
        ),
    ] {
        let e = HaConfig::from_entries(entries(&[(key, value)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && !e.contains("url-s3cret"), "{e}");
    }
    let cluster = ClusterId::new("c").unwrap();
    for url in [
        "s3://u:url-s3cret@bucket/x",
        "file://u:url-s3cret@/tmp/x",
        "s3://u:url-s3cret@bad host/x",
    ] {
        let e = crate::storage::StateStorage::open(url, &cluster, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("high-availability.storageDir") && !e.contains("url-s3cret"),
            "{e}"
        );
    }
    // Not URLs with passwords: digest credentials, quorum strings, user-only URLs.
    for value in [
        "ha-user:pw",
        "zk1:2181,zk2:2181/flink",
        "s3://user@bucket/ha",
        "http://a:2379",
    ] {
        assert!(!url_has_password(value), "{value}");
    }
}

#[test]
fn on_unreadable_policy_is_parsed_and_checked() {
    use crate::OnUnreadable;
    assert_eq!(HaConfig::default().on_unreadable(), OnUnreadable::Quarantine);
    let cfg = HaConfig::from_yaml_str("t", "high-availability.checkpoints.on-unreadable: FAIL\n").unwrap();
    assert_eq!(cfg.on_unreadable(), OnUnreadable::Fail);
    BackendRegistry::global().validate(&cfg).unwrap();
    let err = HaConfig::from_yaml_str("t", "high-availability.checkpoints.on-unreadable: skip\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("high-availability.checkpoints.on-unreadable") && err.contains("quarantine, fail"),
        "{err}"
    );
}
