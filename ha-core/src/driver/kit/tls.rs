//! TLS file options of a backend's config section: `<prefix>ca-cert`,
//! `<prefix>client-cert` and `<prefix>client-key`, PEM files. One set of rules for
//! every backend: none set means no TLS; a client certificate and its key go together;
//! a backend built without TLS support refuses them; errors name the key and the path,
//! never the file contents.

use std::path::{Path, PathBuf};

use crate::config::BackendOptions;
use crate::error::{Error, Result};

/// The PEM files of a TLS client connection, as configured.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct TlsFiles {
    /// CA certificate(s) the server certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// Client private key for mutual TLS (with `client_cert`).
    pub client_key: Option<PathBuf>,
}

/// What a backend demands of its TLS options.
#[derive(Clone, Copy, Debug)]
pub struct TlsRules {
    /// The backend was built with TLS support (its crate feature).
    pub supported: bool,
    /// Named in the error when TLS is configured but not supported, e.g. `ha-etcd`.
    pub crate_name: &'static str,
    /// A CA certificate is required whenever TLS is configured.
    pub ca_required: bool,
}

/// The contents of the PEM files. `Debug` shows sizes only: a private key never
/// reaches a log.
#[derive(Clone, Default)]
pub struct TlsPem {
    /// The CA certificate(s), if configured.
    pub ca_cert: Option<Vec<u8>>,
    /// The client certificate and private key, if configured.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem")
            .field("ca_cert_bytes", &self.ca_cert.as_ref().map(Vec::len))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TlsFiles {
    /// The `<prefix>ca-cert`, `<prefix>client-cert` and `<prefix>client-key` options
    /// of `opts` (`prefix` e.g. `"tls."`), checked by `rules`; `None` when none is set.
    pub fn from_options(opts: &BackendOptions<'_>, prefix: &str, rules: TlsRules) -> Result<Option<Self>> {
        let path = |name: &str| {
            opts.get(&format!("{prefix}{name}"))
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        let files = Self {
            ca_cert: path("ca-cert"),
            client_cert: path("client-cert"),
            client_key: path("client-key"),
        };
        if files == Self::default() {
            return Ok(None);
        }
        files.validate(|name| opts.key(&format!("{prefix}{name}")), rules)?;
        Ok(Some(files))
    }

    /// Checks the files against `rules`; `key` maps `ca-cert`, `client-cert` or
    /// `client-key` to the full config key reported in errors.
    pub fn validate(&self, key: impl Fn(&str) -> String, rules: TlsRules) -> Result<()> {
        if !rules.supported {
            return Err(Error::config(
                key("ca-cert"),
                format!("TLS needs {} built with its crate feature `tls`", rules.crate_name),
            ));
        }
        if rules.ca_required && self.ca_cert.is_none() {
            return Err(Error::config(key("ca-cert"), "is required when TLS is configured"));
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => {
                return Err(Error::config(
                    key("client-key"),
                    format!("is required with {}", key("client-cert")),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    key("client-cert"),
                    format!("is required with {}", key("client-key")),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads the PEM files; a file that cannot be read is an error naming its key
    /// (through `key`, as in [`TlsFiles::validate`]) and its path.
    pub fn read(&self, key: impl Fn(&str) -> String) -> Result<TlsPem> {
        let read = |name: &str, path: &Path| {
            std::fs::read(path).map_err(|e| Error::config(key(name), format!("cannot read {}: {e}", path.display())))
        };
        let ca_cert = self.ca_cert.as_deref().map(|p| read("ca-cert", p)).transpose()?;
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(private)) => Some((read("client-cert", cert)?, read("client-key", private)?)),
            _ => None,
        };
        Ok(TlsPem { ca_cert, identity })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const RULES: TlsRules = TlsRules {
        supported: true,
        crate_name: "ha-test",
        ca_required: true,
    };

    fn files(pairs: &[(&str, &str)], rules: TlsRules) -> Result<Option<TlsFiles>> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("high-availability.embedded.{k}"), v.to_string()))
            .collect();
        TlsFiles::from_options(&BackendOptions::new("embedded", &map), "tls.", rules)
    }

    #[test]
    fn none_set_is_no_tls_and_pairs_go_together() {
        assert_eq!(files(&[], RULES).unwrap(), None);
        let all = files(
            &[
                ("tls.ca-cert", "/ca"),
                ("tls.client-cert", "/c"),
                ("tls.client-key", "/k"),
            ],
            RULES,
        )
        .unwrap()
        .unwrap();
        assert_eq!(all.client_key, Some(PathBuf::from("/k")));
        let e = files(&[("tls.ca-cert", "/ca"), ("tls.client-cert", "/c")], RULES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("high-availability.embedded.tls.client-key"), "{e}");
        let e = files(&[("tls.client-key", "/k"), ("tls.client-cert", "/c")], RULES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.ca-cert") && e.contains("required"), "{e}");
        let optional_ca = TlsRules {
            ca_required: false,
            ..RULES
        };
        assert!(files(&[("tls.client-key", "/k"), ("tls.client-cert", "/c")], optional_ca).is_ok());
        let unsupported = TlsRules {
            supported: false,
            ..RULES
        };
        let e = files(&[("tls.ca-cert", "/ca")], unsupported).unwrap_err().to_string();
        assert!(
            e.contains("tls.ca-cert") && e.contains("ha-test") && e.contains("`tls`"),
            "{e}"
        );
    }

    #[test]
    fn reading_names_the_key_and_path_never_the_contents() {
        let dir = std::env::temp_dir().join(format!("ha-kit-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("client.key");
        std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nsecret\n").unwrap();
        let files = TlsFiles {
            ca_cert: None,
            client_cert: Some(dir.join("missing.pem")),
            client_key: Some(key_file.clone()),
        };
        let e = files.read(|n| format!("x.tls.{n}")).unwrap_err().to_string();
        assert!(e.contains("x.tls.client-cert") && e.contains("missing.pem"), "{e}");
        std::fs::write(dir.join("missing.pem"), "cert").unwrap();
        let pem = files.read(|n| format!("x.tls.{n}")).unwrap();
        assert!(pem.identity.as_ref().unwrap().1.starts_with(b"-----BEGIN"));
        assert!(!format!("{pem:?}").contains("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
