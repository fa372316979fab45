//! `wattlet meter …`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value as Json, json};
use wattlet_meter_parser::{DecoderOptions, Event, Protocol, SkipReason, Telegram, Value, capture};
use wattlet_runtime::locate as components;
use wattlet_runtime::meter::{MeterDecoder, NativeDecoder, ParserComponent};

#[derive(Debug, Subcommand)]
pub enum MeterCommand {
    /// Decode captured probe output: one JSON line per telegram on stdout, a summary on stderr.
    ///
    /// Runs the meter parser component under wasmtime (or the library with --native). A capture
    /// is raw bytes (.bin) or hex text (.hex, or a .txt holding only hex digits); any other .txt
    /// is read as raw ASCII. Exit status: 0 when every file yielded a telegram, 1 when some file
    /// yielded none, 2 on errors (unreadable file, missing component).
    Parse(ParseArgs),
    /// Simulate a meter: SML frames on a pseudo-terminal, read like a real serial probe.
    ///
    /// Opens a pty pair set raw at 9600 8N1, prints the slave's path (e.g. /dev/pts/7) on
    /// stdout, then writes one SML transport-v1 frame per interval: OpenResponse, GetListResponse
    /// with 1-0:1.8.0 (import, Wh), 1-0:2.8.0 (export, Wh) and 1-0:16.7.0 (power, W), and
    /// CloseResponse, with correct message and transport CRCs. Frame i describes simulated time
    /// i × interval, so the output is deterministic: power follows a day curve around
    /// --power-w (half of it at midnight, 1.5× at noon) and energy integrates it exactly.
    /// With --replay, a real capture is written in a loop at 9600-baud pace instead.
    /// Runs until --count is reached or Ctrl-C; frames nobody reads are dropped, as on a line.
    Sim(SimArgs),
    /// Enter a locked meter's PIN by light pulses through the probe's LED.
    ///
    /// Factory-locked meters send a reduced data set (no power, whole kWh) until their PIN is
    /// entered at the optical sensor; `wattlet edge` reports such meters as locked. The PIN (4
    /// digits, from the metering operator) is read from standard input so it does not show in
    /// the process list: `wattlet meter unlock --device /dev/ttyUSB0 --model MT681 < pin.txt`.
    /// Stop `wattlet edge` first: the probe serves one program at a time.
    Unlock(wattlet_edge::cli::UnlockArgs),
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Also create a symlink PATH → the slave device, for a stable configuration; removed on
    /// exit. An existing symlink is replaced, any other file is left alone (error).
    #[arg(long, value_name = "PATH")]
    link: Option<PathBuf>,
    /// Milliseconds between frames (real meters: 1000–4000).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Stop after N frames (with --replay: N passes over the capture); default: until Ctrl-C.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Energy import (1-0:1.8.0) of the first frame, in Wh.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    start_wh: u64,
    /// Mean power in W; negative simulates feeding in (counted on 1-0:2.8.0).
    #[arg(
        long,
        default_value_t = 500,
        value_name = "N",
        allow_negative_numbers = true
    )]
    power_w: i64,
    /// The meter's server id in hex (the meter id the parser reports).
    #[arg(long, default_value = "0a01574c540000bc614e", value_name = "HEX")]
    server_id: String,
    /// Replay this capture (.bin, .hex; as `meter parse` reads it) instead of synthetic frames.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["start_wh", "power_w", "server_id"])]
    replay: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Capture files to decode.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Run the parser library natively instead of the WebAssembly component.
    #[arg(long)]
    native: bool,
    /// Directory holding wattlet_meter_parser.wasm (default: $WATTLET_COMPONENTS, then the cargo
    /// target directory of this binary).
    #[arg(long, value_name = "DIR")]
    components: Option<PathBuf>,
    /// Only decode this protocol (default: detect SML and text telegrams).
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Drop telegrams whose inner checksum (SML message CRC, IEC 62056-21 BCC) fails.
    #[arg(long)]
    strict: bool,
    /// Read DZG's Integer16 power (1-0:16.7.0) as unsigned: DZG DVS74 firmware bug.
    #[arg(long)]
    dzg_unsigned_power: bool,
    /// Feed the decoder in chunks of this many bytes, as a serial port would (0: whole file).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    chunk: usize,
    /// Print skipped byte ranges as JSON lines too.
    #[arg(long)]
    show_skipped: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Sml,
    Iec62056_21,
    Dsmr,
}

pub fn run(command: MeterCommand) -> anyhow::Result<ExitCode> {
    match command {
        MeterCommand::Parse(args) => parse(args),
        MeterCommand::Sim(args) => sim(args),
        MeterCommand::Unlock(args) => wattlet_edge::cli::unlock(args),
    }
}

fn sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.replay {
        Some(file) => wattlet_meter_sim::Source::Replay(capture::load(file)?),
        None => {
            let server_id = hex::decode(args.server_id.trim())
                .with_context(|| format!("--server-id {:?} is not hex", args.server_id))?;
            anyhow::ensure!(
                (1..=255).contains(&server_id.len()),
                "--server-id must hold 1 to 255 bytes"
            );
            wattlet_meter_sim::Source::Synthetic {
                server_id,
                start_wh: args.start_wh,
                mean_power_w: args.power_w,
            }
        }
    };
    let options = wattlet_meter_sim::Options {
        source,
        interval: std::time::Duration::from_millis(args.interval_ms),
        count: args.count,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let pty = wattlet_meter_sim::Pty::open()?;
    let _link = match &args.link {
        Some(link) => Some(wattlet_meter_sim::Link::create(link, pty.slave_path())?),
        None => None,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", pty.slave_path().display()).context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    let stats = wattlet_meter_sim::run(&pty, &options, &stop)?;
    let unit = if args.replay.is_some() {
        ("passes over the capture", "chunks")
    } else {
        ("frames written", "frames")
    };
    eprintln!(
        "meter sim: {} {} ({} bytes), {} {} dropped (nobody reading)",
        stats.frames_written, unit.0, stats.bytes_written, stats.frames_dropped, unit.1
    );
    Ok(ExitCode::SUCCESS)
}

/// Raises `stop` on Ctrl-C or SIGTERM, so the simulator exits cleanly and removes its link.
fn watch_signals(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watcher")?;
    // Registered here, before the first frame, so an early signal is not missed.
    let (mut int, mut term) = runtime.block_on(async {
        anyhow::Ok((
            signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        ))
    })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .context("cannot start the signal watcher")?;
    Ok(())
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let options = DecoderOptions {
        protocol: args.protocol.map(|p| match p {
            ProtocolArg::Sml => Protocol::Sml,
            ProtocolArg::Iec62056_21 => Protocol::Iec62056_21,
            ProtocolArg::Dsmr => Protocol::Dsmr,
        }),
        strict_inner_checksums: args.strict,
        dzg_unsigned_power: args.dzg_unsigned_power,
        ..DecoderOptions::default()
    };
    let component = if args.native {
        None
    } else {
        let path = components::locate("wattlet-meter-parser", args.components.as_deref())?;
        let engine = wattlet_runtime::engine::engine()?;
        Some(ParserComponent::load(&engine, &path)?)
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut total = Summary::default();
    let mut files_without_telegrams = 0;
    for file in &args.files {
        let bytes = capture::load(file)?;
        let mut decoder: Box<dyn MeterDecoder> = match &component {
            Some(component) => Box::new(component.decoder(&options)?),
            None => Box::new(NativeDecoder::new(options.clone())),
        };
        let mut summary = Summary::default();
        let chunk = if args.chunk == 0 {
            bytes.len().max(1)
        } else {
            args.chunk
        };
        for piece in bytes.chunks(chunk) {
            let events = decoder.push(piece)?;
            emit(&mut out, file, events, &mut summary, args.show_skipped)?;
        }
        let events = decoder.finish()?;
        emit(&mut out, file, events, &mut summary, args.show_skipped)?;
        eprintln!("{}: {}", file.display(), summary.describe());
        if summary.telegrams == 0 {
            files_without_telegrams += 1;
        }
        total.add(&summary);
    }
    if args.files.len() > 1 {
        eprintln!("total ({} files): {}", args.files.len(), total.describe());
    }
    out.flush().context("cannot write to stdout")?;
    Ok(if files_without_telegrams > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn emit(
    out: &mut impl Write,
    file: &Path,
    events: Vec<Event>,
    summary: &mut Summary,
    show_skipped: bool,
) -> anyhow::Result<()> {
    for event in events {
        match event {
            Event::Telegram(telegram) => {
                summary.telegrams += 1;
                let line = telegram_json(file, &telegram);
                writeln!(out, "{line}").context("cannot write to stdout")?;
            }
            Event::Skipped(skipped) => {
                let entry = summary.skipped.entry(skipped.reason).or_default();
                entry.0 += 1;
                entry.1 += skipped.length;
                if show_skipped {
                    let line = json!({
                        "file": file.display().to_string(),
                        "skipped": skipped.reason.as_str(),
                        "offset": skipped.offset,
                        "length": skipped.length,
                        "detail": skipped.detail,
                    });
                    writeln!(out, "{line}").context("cannot write to stdout")?;
                }
            }
        }
    }
    Ok(())
}

/// One line per telegram: the meter, and each OBIS code (hex) with its value in base units.
fn telegram_json(file: &Path, telegram: &Telegram) -> Json {
    let mut readings = Map::new();
    for reading in &telegram.readings {
        let value = match &reading.value {
            Value::Number(d) => json!(d.to_f64()),
            Value::Text(t) => json!(t),
            Value::Octets(o) => json!(hex::encode(o)),
            Value::Boolean(b) => json!(b),
        };
        readings
            .entry(reading.obis.to_hex())
            .or_insert_with(|| json!({ "value": value, "unit": reading.unit }));
    }
    json!({
        "file": file.display().to_string(),
        "offset": telegram.offset,
        "protocol": telegram.protocol,
        "meter_id": telegram.meter_id,
        "header": telegram.header,
        "integrity": telegram.integrity,
        "readings": readings,
        "notes": telegram.notes,
    })
}

#[derive(Default)]
struct Summary {
    telegrams: u64,
    /// Per reason: number of ranges and bytes.
    skipped: BTreeMap<SkipReason, (u64, u64)>,
}

impl Summary {
    fn add(&mut self, other: &Summary) {
        self.telegrams += other.telegrams;
        for (reason, (n, bytes)) in &other.skipped {
            let entry = self.skipped.entry(*reason).or_default();
            entry.0 += n;
            entry.1 += bytes;
        }
    }

    fn describe(&self) -> String {
        let mut text = format!("{} telegrams", self.telegrams);
        if self.skipped.is_empty() {
            text.push_str(", nothing skipped");
        } else {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(reason, (n, bytes))| format!("{} {n}× ({bytes} bytes)", reason.as_str()))
                .collect();
            text.push_str(&format!(", skipped: {}", parts.join(", ")));
        }
        text
    }
}
