//! TLS to ZooKeeper's secure client port (crate feature `tls`: rustls through
//! zookeeper-client's `tls` feature). The PEM files are read when a connector is made;
//! errors name the config key and the path, never the file contents.

use ha_core::Result;
use zookeeper_client as zk;

use crate::config::ZooKeeperConfig;

/// Connects `connector` to `quorum`: over TLS to every member when `config` has TLS
/// settings (members written `tcp://host:port` stay plain), else plain.
pub(crate) async fn connect(
    connector: zk::Connector,
    config: &ZooKeeperConfig,
    quorum: &str,
) -> std::result::Result<zk::Client, zk::Error> {
    #[cfg(feature = "tls")]
    if config.tls.is_some() {
        return connector.secure_connect(quorum).await;
    }
    #[cfg(not(feature = "tls"))]
    let _ = config;
    connector.connect(quorum).await
}

/// Adds the TLS settings of `config`, if any, to `connector`.
#[cfg(feature = "tls")]
pub(crate) fn apply(connector: zk::Connector, config: &ZooKeeperConfig) -> Result<zk::Connector> {
    use ha_core::Error;

    let Some(tls) = &config.tls else {
        return Ok(connector);
    };
    install_crypto_provider();
    let key = |name: &str| format!("high-availability.zookeeper.client.tls.{name}");
    tls.validate(key, crate::config::TLS_RULES)?;
    let pem = tls.read(key)?;
    let text = |name: &str, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| Error::config(key(name), "is not a PEM text file"))
    };
    // zookeeper-client's messages name what failed ("fail to read client private
    // key"), never the PEM text.
    let ca_path = tls.ca_cert.as_deref().unwrap_or(std::path::Path::new(""));
    let ca = text("ca-cert", pem.ca_cert.unwrap_or_default())?;
    let options = zk::TlsOptions::new()
        .with_pem_ca(&ca)
        .map_err(|e| Error::config(key("ca-cert"), format!("{}: {e}", ca_path.display())))?;
    let options = match pem.identity {
        Some((cert, private)) => options
            .with_pem_identity(&text("client-cert", cert)?, &text("client-key", private)?)
            .map_err(|e| {
                let path = |p: &Option<std::path::PathBuf>| p.as_deref().map(|p| p.display().to_string());
                Error::config(
                    key("client-cert"),
                    format!(
                        "{} with key {}: {e}",
                        path(&tls.client_cert).unwrap_or_default(),
                        path(&tls.client_key).unwrap_or_default()
                    ),
                )
            })?,
        None => options,
    };
    Ok(connector.with_tls(options))
}

/// Without the `tls` feature, config validation has already refused TLS settings.
#[cfg(not(feature = "tls"))]
pub(crate) fn apply(connector: zk::Connector, _config: &ZooKeeperConfig) -> Result<zk::Connector> {
    Ok(connector)
}

/// zookeeper-client builds its rustls config with the process-wide crypto provider;
/// when more than one provider is compiled in (the workspace links ring through
/// etcd-client and aws-lc-rs through kube and object_store) rustls cannot pick one by
/// itself and panics. Installs aws-lc-rs (zookeeper-client's rustls default) unless
/// the application installed one.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: any provider will do.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}
