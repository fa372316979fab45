//! `wattlet audit verify`: checks an access log (`GET /api/household/access_log`) against a
//! chain head the verifier got on its own: every entry's SHA-256 from the one before and the
//! last one equal to the head (`wattlet_policy::log`). `wattlet audit policy-digest`: the content
//! digest of a policy from a checkout (`wattlet_policy::digest`), to compare with the one the
//! access log names for the code that decided.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an access log's hash chain up to a head (exit 0 intact, 1 tampered or not at the
    /// head, 2 unreadable).
    Verify(VerifyArgs),
    /// Print the content digest (`sha256:<hex>`) of a policy from a checkout of the repository:
    /// the digest an attachment and every access log entry name for that policy's code.
    PolicyDigest(PolicyDigestArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    git checkout v0.1.0 && wattlet audit policy-digest retention")]
pub struct PolicyDigestArgs {
    /// The policy: a crate directory name under components/policies (e.g. `retention`).
    policy: String,
    /// The repository checkout.
    #[arg(long, value_name = "DIR", default_value = ".")]
    repo: PathBuf,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    wattlet audit verify --log access_log.json --head 3f2a…\n  \
    WATTLET_TOKEN=$PARTICIPANT_TOKEN wattlet audit verify \\\n    \
    --log https://cloud.example/api/household/access_log --ca ca.pem --head 3f2a…")]
pub struct VerifyArgs {
    /// The log: a JSON file as the Data API answers it, `-` for standard input, or the
    /// `http(s)://…/api/household/access_log` URL to fetch it from.
    #[arg(long, value_name = "FILE|URL")]
    log: String,
    /// The chain head to verify against (64 hex digits), obtained independently of the log.
    #[arg(long, value_name = "HASH")]
    head: String,
    /// A participant's token for fetching the log (`POST /api/household/token`).
    #[arg(long, env = "WATTLET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA that signed the server's certificate, for an `https://` URL.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::PolicyDigest(args) => policy_digest(&args),
    }
}

fn policy_digest(args: &PolicyDigestArgs) -> anyhow::Result<ExitCode> {
    let policies = args.repo.join("components/policies");
    let dir = policies.join(&args.policy);
    if args.policy == "core" || !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} is not a policy crate (components/policies/<policy>/Cargo.toml in the checkout at {})",
            args.policy,
            args.repo.display()
        );
    }
    let digest = wattlet_policy::digest::source_digest(
        &dir,
        &policies.join("core"),
        &args.repo.join("wit/policy"),
    )
    .with_context(|| format!("reading the sources of {}", dir.display()))?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let head = args.head.trim();
    if head.len() != 64 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--head: 64 hex digits (a SHA-256) expected");
    }
    let log = load(&args)?;
    match wattlet_policy::log::verify(&log, head) {
        Ok(v) => {
            match v.first_seq {
                Some(first) => println!(
                    "intact: {} entries from {first} up to head {}",
                    v.entries, v.head
                ),
                None => println!("intact: no entries, head {}", v.head),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("NOT VERIFIED: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn load(args: &VerifyArgs) -> anyhow::Result<Value> {
    for scheme in ["http", "https"] {
        if let Some(rest) = args.log.strip_prefix(&format!("{scheme}://")) {
            return fetch(args, (scheme, rest));
        }
    }
    let text = if args.log == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the log from standard input")?
    } else {
        std::fs::read_to_string(&args.log).with_context(|| format!("reading {}", args.log))?
    };
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", args.log))
}

fn fetch(args: &VerifyArgs, (scheme, rest): (&str, &str)) -> anyhow::Result<Value> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => bail!("--log {}: the URL names no path", args.log),
    };
    let tls = match (scheme, &args.ca) {
        ("https", Some(ca)) => Some(Arc::new(wattlet_tls::anonymous_client_tls_config(ca)?)),
        ("https", None) => bail!("--ca: the server's CA is needed for an https:// log"),
        _ => None,
    };
    let mut client = wattlet_api_client::ApiClient::new(&format!("{scheme}://{authority}"), tls)?;
    if let Some(token) = &args.token {
        client = client.with_bearer(token.trim());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime
        .block_on(client.send("GET", path, None, &[]))
        .with_context(|| format!("fetching {}", args.log))?;
    if status != 200 {
        bail!("fetching {}: {status} {body}", args.log);
    }
    Ok(body)
}
