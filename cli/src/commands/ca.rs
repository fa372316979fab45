//! `wattlet ca`: a certificate authority for device identities and servers (mutual TLS).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use wattlet_pki::{CaDir, CertKind, DeviceRequest, ServerRequest};

/// Manage the certificate authority that issues device and server certificates.
///
/// A CA lives in a directory: `ca.crt` (give it to servers as --client-ca and to devices),
/// `ca.key` (mode 0600, keep it secret), `issued/` (one record per certificate) and `crl.pem`
/// (the revocation list for `wattlet serve --crl`).
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a CA (ECDSA P-256, self-signed) in a directory, with an empty CRL.
    Init {
        #[command(flatten)]
        dir: DirArg,
        /// The CA's common name.
        #[arg(long, default_value = "wattlet device CA", value_name = "NAME")]
        name: String,
        /// Validity of the CA certificate (e.g. `10years`, `90days`).
        #[arg(long, default_value = "10years", value_parser = humantime::parse_duration, value_name = "DURATION")]
        validity: Duration,
        /// Replace an existing CA in the directory (every certificate it issued stops being
        /// trusted, and its records are deleted).
        #[arg(long)]
        force: bool,
    },
    /// Issue a device certificate: CN and SAN URI `urn:wattlet:device:ID`, SAN email.
    Device {
        #[command(flatten)]
        dir: DirArg,
        /// The device id: 1–64 characters of A–Z, a–z, 0–9, '.', '_', '-'.
        #[arg(long, value_name = "ID")]
        id: String,
        /// The participant's email address.
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// Write PREFIX.crt and PREFIX.key (mode 0600).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
        /// Validity (e.g. `5years`, `30days`).
        #[arg(long, default_value = "5years", value_parser = humantime::parse_duration, value_name = "DURATION")]
        validity: Duration,
    },
    /// Sign a device's certificate signing request (from `wattlet-edge enrol request`): the
    /// device keeps its private key. The request's signature is checked; the device id and
    /// email come from these options, never from the request.
    SignCsr {
        #[command(flatten)]
        dir: DirArg,
        /// The device's request (PEM), e.g. the device.csr it printed.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// The device id: 1–64 characters of A–Z, a–z, 0–9, '.', '_', '-'.
        #[arg(long, value_name = "ID")]
        id: String,
        /// The participant's email address.
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// Write the certificate here (PEM).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Validity (e.g. `5years`, `30days`).
        #[arg(long, default_value = "5years", value_parser = humantime::parse_duration, value_name = "DURATION")]
        validity: Duration,
    },
    /// Issue a server certificate for DNS names and IP addresses
    /// [default: localhost and 127.0.0.1].
    Server {
        #[command(flatten)]
        dir: DirArg,
        /// A DNS name (repeatable).
        #[arg(long = "name", value_name = "DNS")]
        names: Vec<String>,
        /// An IP address (repeatable).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<IpAddr>,
        /// Write PREFIX.crt and PREFIX.key (mode 0600).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
        /// Validity (e.g. `1year`, `90days`).
        #[arg(long, default_value = "1year", value_parser = humantime::parse_duration, value_name = "DURATION")]
        validity: Duration,
        /// The server also dials its peers with this certificate (NATS cluster routes): it
        /// gets the client-authentication usage too.
        #[arg(long)]
        peer: bool,
    },
    /// Revoke a certificate: add it to the CRL (crl.pem is rewritten atomically; servers
    /// watching it refuse the device from its next request on).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["serial", "cert"])))]
    Revoke {
        #[command(flatten)]
        dir: DirArg,
        /// The serial number in hex, as `wattlet ca list` prints it.
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// The certificate file (PEM) to revoke.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
    },
    /// List the issued certificates: serial, kind, subject, expiry, revocation.
    List {
        #[command(flatten)]
        dir: DirArg,
    },
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The CA directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

fn date(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

pub fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init {
            dir,
            name,
            validity,
            force,
        } => {
            let ca = CaDir::init(&dir.dir, &name, validity, force)?;
            println!("created CA {name:?} in {}", dir.dir.display());
            println!("  certificate: {}", ca.ca_cert_path().display());
            println!("  CRL:         {}", ca.crl_path().display());
        }
        CaCommand::Device {
            dir,
            id,
            email,
            out,
            validity,
        } => {
            let ca = CaDir::open(&dir.dir)?;
            let issued = ca.issue_device(&DeviceRequest {
                device_id: id.clone(),
                email,
                validity,
            })?;
            let (cert, key) = issued
                .write(&out)
                .context("cannot write the device files")?;
            println!(
                "issued device certificate {} for {id}: {} {}",
                issued.serial_hex,
                cert.display(),
                key.display()
            );
        }
        CaCommand::SignCsr {
            dir,
            csr,
            id,
            email,
            out,
            validity,
        } => {
            let ca = CaDir::open(&dir.dir)?;
            let pem = std::fs::read_to_string(&csr)
                .with_context(|| format!("cannot read {}", csr.display()))?;
            let signed = ca
                .sign_device_csr(
                    &pem,
                    &DeviceRequest {
                        device_id: id.clone(),
                        email,
                        validity,
                    },
                )
                .with_context(|| format!("{}", csr.display()))?;
            signed
                .write(&out)
                .context("cannot write the device certificate")?;
            println!(
                "issued device certificate {} for {id}: {}; on the device: \
                 wattlet-edge enrol install --cert {} --ca {}",
                signed.serial_hex,
                out.display(),
                out.file_name()
                    .map_or(out.display(), |n| Path::new(n).display()),
                ca.ca_cert_path().display()
            );
        }
        CaCommand::Server {
            dir,
            names,
            ips,
            out,
            validity,
            peer,
        } => {
            let ca = CaDir::open(&dir.dir)?;
            let mut request = ServerRequest {
                validity,
                peer,
                ..ServerRequest::default()
            };
            if !names.is_empty() || !ips.is_empty() {
                request.dns_names = names;
                request.ip_addresses = ips;
            }
            let issued = ca.issue_server(&request)?;
            let (cert, key) = issued
                .write(&out)
                .context("cannot write the server files")?;
            let subjects: Vec<String> = request
                .dns_names
                .iter()
                .cloned()
                .chain(request.ip_addresses.iter().map(IpAddr::to_string))
                .collect();
            println!(
                "issued server certificate {} for {}: {} {}",
                issued.serial_hex,
                subjects.join(", "),
                cert.display(),
                key.display()
            );
        }
        CaCommand::Revoke { dir, serial, cert } => {
            let ca = CaDir::open(&dir.dir)?;
            let serial = match (serial, cert) {
                (Some(serial), _) => wattlet_tls::normalize_serial(&serial)?,
                (None, Some(cert)) => {
                    let pem = std::fs::read(&cert)
                        .with_context(|| format!("cannot read {}", cert.display()))?;
                    wattlet_tls::certificate_serial(&pem)
                        .with_context(|| format!("{}", cert.display()))?
                }
                (None, None) => anyhow::bail!("give --serial HEX or --cert FILE"),
            };
            if ca.revoke(&serial)? {
                println!("revoked {serial}; {} updated", ca.crl_path().display());
            } else {
                println!(
                    "{serial} was already revoked; {} rewritten",
                    ca.crl_path().display()
                );
            }
        }
        CaCommand::List { dir } => {
            let ca = CaDir::open(&dir.dir)?;
            let records = ca.list()?;
            if records.is_empty() {
                println!("no certificates issued yet");
            }
            for record in records {
                let kind = match record.kind {
                    CertKind::Device => "device",
                    CertKind::Server => "server",
                };
                let status = match record.revoked_at {
                    Some(at) => format!("revoked {}", date(at)),
                    None => "valid".to_owned(),
                };
                println!(
                    "{}  {kind}  {}  until {}  {status}",
                    record.serial,
                    record.subject(),
                    date(record.not_after)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
