//! The NATS options every command that talks to the queue shares.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The NATS server (JetStream enabled); for a cluster, several servers separated by commas.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The CA of the NATS servers' certificates (PEM): connect over TLS only.
    #[arg(long, value_name = "FILE", env = "WATTLET_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that authenticate clients by certificate
    /// (nats-server's `tls { verify: true }`); needs --nats-key and --nats-ca.
    #[arg(
        long,
        value_name = "FILE",
        env = "WATTLET_NATS_CERT",
        requires = "nats_key",
        requires = "nats_ca"
    )]
    pub nats_cert: Option<PathBuf>,
    /// The private key of --nats-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "WATTLET_NATS_KEY",
        requires = "nats_cert"
    )]
    pub nats_key: Option<PathBuf>,
}

impl NatsArgs {
    /// Where NATS is and how to reach it.
    pub fn connection(&self) -> wattlet_workers::Nats {
        wattlet_workers::Nats {
            url: self.nats.clone(),
            tls: self.nats_ca.clone().map(|ca| wattlet_workers::NatsTls {
                ca,
                client: self.nats_cert.clone().zip(self.nats_key.clone()),
            }),
        }
    }
}
