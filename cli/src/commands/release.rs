//! `wattlet release`: the signed update repository (TUF) that devices update their components
//! from. Publishing and verifying are `wattlet_updates`; this module reads arguments and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use wattlet_updates::{ComponentMeta, InitOptions, KeyRole, Publisher, Refresh, Verifier};

/// Publish component versions as a signed update repository (TUF), and check it as a device
/// would.
///
/// A repository is a directory (`metadata/`, `targets/`) that any static file server serves.
/// Its keys live in another directory, one PEM file per key (`root-1.pem`, `release-1.pem`, …,
/// mode 0600): keep root and targets keys offline, release keys with whoever releases, and
/// only snapshot and timestamp keys on the machine that runs `refresh`.
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Create a repository and its keys (root, targets, snapshot, timestamp and the release
    /// role, to which targets delegates components/*/*.wasm).
    Init(InitArgs),
    /// Add a component version (signed by the release keys; snapshot and timestamp re-signed).
    Add(AddArgs),
    /// Re-sign snapshot and timestamp with fresh expiry: run it daily (the timestamp lives 2
    /// days), or devices refuse the repository as frozen.
    Refresh(RefreshArgs),
    /// Replace a role's keys in a new root version (after a key is lost or stolen).
    Rotate(RotateArgs),
    /// List the component versions in a repository.
    List(RepoArg),
    /// Verify a repository as a device would and say which version it would install.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct RepoArg {
    /// The repository directory (holds metadata/ and targets/).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeysArg {
    /// The directory of the signing keys (<role>-<n>.pem).
    #[arg(long, value_name = "DIR")]
    keys: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Example (two of three keys must sign every role):\n  \
    wattlet release init --repo updates/ --keys keys/ --threshold 2 --keys-per-role 3\n\
    Devices ship with updates/metadata/1.root.json.")]
pub struct InitArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeysArg,
    /// Signatures each role needs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threshold: u64,
    /// Keys generated per role [default: the threshold].
    #[arg(long, value_name = "N")]
    keys_per_role: Option<u64>,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    wattlet release add --repo updates/ --keys keys/ --component meter-parser --version 1.4.0 \\\n    \
    --world wattlet:meter/parser --min-host 0.1.0 wattlet_meter_parser.wasm")]
// `--version` names the component's version here, not this program's.
#[command(disable_version_flag = true)]
pub struct AddArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeysArg,
    /// The component's name (lowercase letters, digits, '-').
    #[arg(long, value_name = "NAME")]
    component: String,
    /// Its version (semver); devices only move to newer versions.
    #[arg(long = "version", id = "component-version", value_name = "VERSION")]
    component_version: semver::Version,
    /// The WIT world it exports (e.g. wattlet:meter/parser).
    #[arg(long, value_name = "WORLD")]
    world: String,
    /// The oldest host version that can run it.
    #[arg(long, value_name = "VERSION")]
    min_host: semver::Version,
    /// The component (.wasm).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeysArg,
    /// Also re-sign the top-level targets metadata (needs the targets keys; it lives 180 days).
    #[arg(long)]
    targets: bool,
    /// Also re-sign the release metadata (needs the release keys; it lives 180 days).
    #[arg(long)]
    release: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RotatableRole {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[command(flatten)]
    keys: KeysArg,
    /// The role whose keys are replaced (old keys move to <keys>/retired/).
    #[arg(long, value_enum)]
    role: RotatableRole,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 an update would be installed, 1 none, 2 refused or an \
    error (the message says which guarantee refused it). Example:\n  \
    wattlet release check --repo https://survey.example:8443/updates/ --root 1.root.json \\\n    \
    --component meter-parser --cert device.crt --key device.key --ca ca.crt"
)]
pub struct CheckArgs {
    /// The repository: a directory, or an https:// URL (over mutual TLS with --cert/--key/--ca).
    #[arg(long, value_name = "DIR|URL")]
    repo: String,
    /// The trusted root the device ships with (metadata/1.root.json of the repository).
    #[arg(long, value_name = "FILE")]
    root: PathBuf,
    /// The component to look for.
    #[arg(long, value_name = "NAME")]
    component: String,
    /// The version installed now: only newer ones count.
    #[arg(long, value_name = "VERSION")]
    installed: Option<semver::Version>,
    /// The host version the device runs [default: this build's].
    #[arg(long, value_name = "VERSION")]
    host_version: Option<semver::Version>,
    /// Where trusted metadata is kept between checks [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    datastore: Option<PathBuf>,
    /// Write the verified component here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The device certificate (PEM) for an https:// repository.
    #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,
    /// The device key (PEM).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The CA the server's certificate comes from (PEM).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

pub fn run(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(command))
}

async fn run_async(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReleaseCommand::Init(args) => {
            let threshold = std::num::NonZeroU64::new(args.threshold)
                .context("--threshold must be at least 1")?;
            let keys_per_role =
                std::num::NonZeroU64::new(args.keys_per_role.unwrap_or(args.threshold))
                    .context("--keys-per-role must be at least 1")?;
            let publisher = Publisher::init(
                &args.repo.repo,
                &args.keys.keys,
                InitOptions {
                    threshold,
                    keys_per_role,
                    ..InitOptions::default()
                },
            )
            .await
            .with_context(|| format!("creating a repository in {}", args.repo.repo.display()))?;
            let root = publisher.root_path()?;
            println!("repository: {}", args.repo.repo.display());
            println!(
                "keys:       {} ({keys_per_role} per role, {threshold} to sign)",
                args.keys.keys.display()
            );
            println!("ship this root with every device: {}", root.display());
        }
        ReleaseCommand::Add(args) => {
            let meta = ComponentMeta {
                name: args.component,
                version: args.component_version,
                world: args.world,
                min_host: args.min_host,
            };
            let publisher = Publisher::open(&args.repo.repo, &args.keys.keys);
            let target = publisher
                .add(&meta, &args.file)
                .await
                .with_context(|| format!("adding {} {}", meta.name, meta.version))?;
            println!("published {target}");
        }
        ReleaseCommand::Refresh(args) => {
            Publisher::open(&args.repo.repo, &args.keys.keys)
                .refresh(Refresh {
                    targets: args.targets,
                    release: args.release,
                })
                .await
                .context("refreshing the repository")?;
            println!("re-signed {}", args.repo.repo.display());
        }
        ReleaseCommand::Rotate(args) => {
            let role = match args.role {
                RotatableRole::Root => KeyRole::Root,
                RotatableRole::Targets => KeyRole::Targets,
                RotatableRole::Snapshot => KeyRole::Snapshot,
                RotatableRole::Timestamp => KeyRole::Timestamp,
            };
            let publisher = Publisher::open(&args.repo.repo, &args.keys.keys);
            publisher
                .rotate(role)
                .await
                .with_context(|| format!("rotating the {role} keys"))?;
            println!(
                "new {role} keys in {}; new root {}",
                args.keys.keys.display(),
                publisher.root_path()?.display()
            );
        }
        ReleaseCommand::List(args) => {
            // Listing reads only the repository; it signs nothing.
            let publisher = Publisher::open(&args.repo, Path::new(""));
            for meta in publisher.components().await? {
                println!(
                    "{} {}  world {}  min-host {}",
                    meta.name, meta.version, meta.world, meta.min_host
                );
            }
        }
        ReleaseCommand::Check(args) => return check(args).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let root = std::fs::read(&args.root)
        .with_context(|| format!("reading the trusted root {}", args.root.display()))?;
    let host_version = match args.host_version {
        Some(v) => v,
        None => semver::Version::parse(env!("CARGO_PKG_VERSION"))
            .context("this build's version is not semver")?,
    };
    let scratch = tempfile_dir()?;
    let datastore = args.datastore.clone().unwrap_or_else(|| scratch.clone());
    let verifier = if args.repo.starts_with("https://") {
        let url = url::Url::parse(&args.repo).with_context(|| format!("--repo {}", args.repo))?;
        let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) else {
            bail!("an https:// repository needs --cert, --key and --ca (the device's identity)");
        };
        let tls = wattlet_tls::client_tls_config(cert, key, ca)
            .context("loading the device's TLS identity")?;
        Verifier::new(root, &datastore, &url, host_version)?
            .transport(wattlet_updates::https::HttpsTransport::new(Arc::new(tls)))
    } else if args.repo.contains("://") {
        bail!("--repo: use a directory or an https:// URL");
    } else {
        Verifier::for_directory(root, &datastore, Path::new(&args.repo), host_version)?
    };
    let result = verifier
        .check(&args.component, args.installed.as_ref())
        .await;
    if args.datastore.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    match result.context("the update repository was refused")? {
        None => {
            println!("no newer version of {} for this host", args.component);
            Ok(ExitCode::from(1))
        }
        Some(update) => {
            println!(
                "{} {} ({} bytes, sha256 {}, world {}, min-host {})",
                update.meta.name,
                update.meta.version,
                update.bytes.len(),
                update.sha256,
                update.meta.world,
                update.meta.min_host
            );
            if let Some(out) = &args.out {
                std::fs::write(out, &update.bytes)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A fresh directory for a one-off check's trusted metadata.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "wattlet-release-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
