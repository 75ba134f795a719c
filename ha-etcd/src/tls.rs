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

    let Some(tls) = &config.tls else {
        return Ok(opts);
    };
    let pem = tls.read(|name| format!("high-availability.etcd.tls.{name}"))?;
    let mut t = TlsOptions::new();
    if let Some(ca) = pem.ca_cert {
        t = t.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = pem.identity {
        t = t.identity(Identity::from_pem(cert, key));
    }
    Ok(opts.with_tls(t))
}

/// Without the `tls` feature, validation has already refused any TLS setting.
#[cfg(not(feature = "tls"))]
pub(crate) fn apply(opts: ConnectOptions, _config: &EtcdConfig) -> Result<ConnectOptions> {
    Ok(opts)
}
