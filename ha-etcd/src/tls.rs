//! TLS for the etcd connection (crate feature `tls`: rustls with ring, through
//! etcd-client's `tls` feature). Without the feature a TLS config is refused at
//! validation, naming the key.

use etcd_client::ConnectOptions;
use ha_core::Result;

use crate::config::EtcdConfig;

/// Adds the TLS settings of `config`, if any, to `opts`.
#[cfg(feature = "tls")]
pub(crate) fn apply(opts: ConnectOptions, config: &EtcdConfig) -> Result<ConnectOptions> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    use ha_core::Error;

    let Some(tls) = &config.tls else {
        return Ok(opts);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::config(
                format!("high-availability.etcd.{key}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    let mut t = TlsOptions::new();
    if let Some(ca) = &tls.ca_cert {
        t = t.ca_certificate(Certificate::from_pem(read("tls.ca-cert", ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        t = t.identity(Identity::from_pem(
            read("tls.client-cert", cert)?,
            read("tls.client-key", key)?,
        ));
    }
    Ok(opts.with_tls(t))
}

/// Without the `tls` feature, validation has already refused any TLS setting.
#[cfg(not(feature = "tls"))]
pub(crate) fn apply(opts: ConnectOptions, _config: &EtcdConfig) -> Result<ConnectOptions> {
    Ok(opts)
}
