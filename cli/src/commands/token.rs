//! `wattlet token`: restrict an access token offline, or show its restrictions. Minting needs
//! the server's secret and happens in the Data API (`POST /api/management/token`).

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use wattlet_access_token::{Caveat, DataClass, Token};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Add restrictions to a token and print the restricted token (no key needed).
    Attenuate(AttenuateArgs),
    /// Print a token's restrictions, one per line (does not check its signature).
    Inspect(TokenArg),
}

#[derive(Debug, Args)]
pub struct TokenArg {
    /// The token (`wt1.…`), or `-` to read it from standard input.
    token: String,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Restrictions only narrow a token: the Data API checks every one of them and \
                  refuses a token whose restrictions were removed or changed. Example:\n  \
                  wattlet token attenuate \"$TOKEN\" --read-only --expires-at 2026-12-31T00:00:00Z\n\
                  A token for one class of data, read-only, for one month of it:\n  \
                  wattlet token attenuate \"$TOKEN\" --class measurements --read-only \\\n    \
                  --data-from 2026-11-01T00:00:00Z --data-to 2026-12-01T00:00:00Z"
)]
pub struct AttenuateArgs {
    #[command(flatten)]
    token: TokenArg,
    /// Only reading requests (GET).
    #[arg(long)]
    read_only: bool,
    /// Only this household (its id).
    #[arg(long, value_name = "HOUSEHOLD")]
    household: Option<String>,
    /// Refused from this instant on (RFC 3339, e.g. 2026-12-31T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_rfc3339_weak)]
    expires_at: Option<std::time::SystemTime>,
    /// Only this class of a household's data; every endpoint serving anything else is refused.
    #[arg(long, value_name = "CLASS", value_parser = data_class())]
    class: Option<DataClass>,
    /// Only data from this instant on (RFC 3339); with --data-to. Rows outside are never
    /// served, and endpoints serving no time series are refused.
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_rfc3339_weak, requires = "data_to")]
    data_from: Option<std::time::SystemTime>,
    /// Only data before this instant (RFC 3339); with --data-from.
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_rfc3339_weak, requires = "data_from")]
    data_to: Option<std::time::SystemTime>,
}

/// `--class`: one of the access token's data classes, listed in the help.
fn data_class() -> impl clap::builder::TypedValueParser<Value = DataClass> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(DataClass::ALL.map(DataClass::name))
        .try_map(|name| DataClass::parse(&name).ok_or("not a data class"))
}

/// Seconds since the epoch of `at`, for the option `flag`.
fn epoch_seconds(at: std::time::SystemTime, flag: &str) -> anyhow::Result<u64> {
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{flag} is before 1970"))?
        .as_secs())
}

pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Attenuate(args) => {
            let mut token = read_token(&args.token)?;
            let mut added = 0;
            if let Some(at) = args.expires_at {
                token = token.attenuate(Caveat::ExpiresAt(epoch_seconds(at, "--expires-at")?));
                added += 1;
            }
            if let Some(class) = args.class {
                token = token.attenuate(Caveat::Class(class));
                added += 1;
            }
            if let (Some(from), Some(to)) = (args.data_from, args.data_to) {
                let (from, to) = (
                    epoch_seconds(from, "--data-from")?,
                    epoch_seconds(to, "--data-to")?,
                );
                if from >= to {
                    bail!("--data-from must be before --data-to");
                }
                let (Ok(from), Ok(to)) = (i64::try_from(from), i64::try_from(to)) else {
                    bail!("--data-from/--data-to: out of range");
                };
                token = token.attenuate(Caveat::Range { from, to });
                added += 1;
            }
            if let Some(household) = args.household {
                token = token.attenuate(Caveat::Household(household.trim().to_lowercase()));
                added += 1;
            }
            if args.read_only {
                token = token.attenuate(Caveat::ReadOnly);
                added += 1;
            }
            if added == 0 {
                bail!(
                    "no restriction given: use --read-only, --household, --expires-at, --class \
                     or --data-from with --data-to"
                );
            }
            println!("{}", token.encode());
        }
        TokenCommand::Inspect(arg) => {
            let token = read_token(&arg)?;
            println!("id {}", token.id());
            for caveat in token.caveats() {
                println!("{}", caveat.encode());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_token(arg: &TokenArg) -> anyhow::Result<Token> {
    let text = if arg.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the token from standard input")?;
        text
    } else {
        arg.token.clone()
    };
    Token::decode(text.trim()).context("not a wattlet access token")
}
