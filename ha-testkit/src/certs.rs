//! `TestCerts`: a throw-away CA with a server certificate for `127.0.0.1` and client
//! certificates, made at test time with the `openssl` command in a temp directory
//! (removed on drop). Keys are unencrypted PKCS#8 PEM, as ZooKeeper's PEM key store and
//! rustls read them.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CA, a server certificate (SAN `IP:127.0.0.1`, server and client auth) and a
/// client certificate signed by it, as PEM files in a temp directory.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run openssl (install the `openssl` package): {e}"),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

impl TestCerts {
    /// Makes the CA (`ca.pem`), the server pair (`server.pem`, `server.key`, and
    /// `server-keystore.pem` = key followed by certificate) and the client pair
    /// (`client.pem`, `client.key`).
    pub fn generate() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("ha-certs-").tempdir()?;
        let d = dir.path();
        std::fs::write(
            d.join("ext.cnf"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        )?;
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=ha-rs-test-ca",
            ],
        )?;
        let certs = Self { dir };
        certs.issue("server")?;
        certs.issue("client")?;
        let mut keystore = std::fs::read(certs.path("server.key"))?;
        keystore.extend(std::fs::read(certs.path("server.pem"))?);
        std::fs::write(certs.path("server-keystore.pem"), keystore)?;
        Ok(certs)
    }

    /// Issues another certificate `<name>.pem` with key `<name>.key` from the CA.
    pub fn issue(&self, name: &str) -> io::Result<()> {
        let d = self.dir.path();
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        )?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        )
    }

    /// The file `name` in the certificate directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's PEM key store: its private key followed by its certificate.
    pub fn server_keystore(&self) -> PathBuf {
        self.path("server-keystore.pem")
    }

    /// The client certificate.
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// The client private key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }
}
