//! One policy call (`wit/policy`'s `read` hook) as a wasm component under wasmtime vs the same
//! policy library called natively, in the same run, on a day of 15-minute measurements (96
//! rows of power and energy): retention (keeps every row: `allow`) and researchers-aggregate
//! at 15 minutes (a `transform`: every row comes back as an aggregate). The component is called
//! on a warm instance and on a fresh instance per call (what a request of `wattlet serve` pays:
//! Spin's model makes new instances for every request), and instantiation alone is timed.
//!
//! Run: `./dev build && cargo bench -p wattlet-runtime --bench policy_call`
//! (`WATTLET_POLICY_CALLS`, default 20000 calls per figure).

use std::hint::black_box;
use std::time::{Duration, Instant};

use wasmtime::component::Linker;
use wattlet_policy::Policy;
use wattlet_runtime::sandbox::{self, HostState, Limits};
use wattlet_runtime::{engine as runtime, locate as components};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/policy",
        world: "policy-chain",
    });
    pub mod retention {
        wasmtime::component::bindgen!({
            path: "../../wit/policy",
            world: "retention-policy",
            with: { "wattlet:policy/types": super::wattlet::policy::types },
        });
    }
    pub mod aggregate {
        wasmtime::component::bindgen!({
            path: "../../wit/policy",
            world: "researchers-aggregate-policy",
            with: { "wattlet:policy/types": super::wattlet::policy::types },
        });
    }
}
use bindings::wattlet::policy::types as wit;

const LIMITS: Limits = Limits {
    call: Duration::from_secs(1),
    memory: 64 << 20,
};
const POWER: &str = "0100100700ff";
const ENERGY: &str = "0100010800ff";
const MINUTE: i64 = 60_000_000_000;
/// 2026-12-01T00:00:00Z in ns: the Data API's clock for every call.
const NOW: i64 = 1_796_083_200 * 1_000_000_000;

/// A day of 15-minute measurements ending now, as the Data API hands them to a chain.
fn day() -> wattlet_policy::Rows {
    let mut rows = wattlet_policy::Rows::with_registers(vec![POWER.into(), ENERGY.into()]);
    for i in 0..96u32 {
        let at = NOW - 1440 * MINUTE + i64::from(i) * 15 * MINUTE;
        rows.push(
            Some(i),
            at,
            0,
            1,
            &[400.0 + f64::from(i), 1000.0 + f64::from(i)],
        );
    }
    rows
}

fn context() -> wattlet_policy::Context {
    wattlet_policy::Context {
        role: wattlet_policy::Role::Researcher,
        caveats: vec![],
        purpose: None,
        range: wattlet_policy::TimeRange::default(),
        now: NOW,
        peers: Some(5),
    }
}

fn wit_rows(r: &wattlet_policy::Rows) -> wit::Rows {
    wit::Rows {
        origin: r.origin.clone(),
        at: r.at.clone(),
        span: r.span.clone(),
        samples: r.samples.clone(),
        registers: r.registers.clone(),
        values: r.values.clone(),
    }
}

fn wit_context(c: &wattlet_policy::Context) -> wit::Context {
    wit::Context {
        role: wit::Role::Researcher,
        caveats: c.caveats.clone(),
        purpose: c.purpose.clone(),
        range: wit::TimeRange {
            from: c.range.from,
            to: c.range.to,
        },
        now: c.now,
        peers: c.peers,
    }
}

/// The median over 5 rounds of the mean time of `calls` calls of `f`.
fn time(calls: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..calls.div_ceil(10) {
        f();
    }
    let mut rounds: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed() / calls
        })
        .collect();
    rounds.sort();
    rounds[2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The decision's name and how many rows it serves, so both sides can be compared.
fn outcome(d: &wit::Decision) -> (&'static str, usize) {
    match d {
        wit::Decision::Allow => ("allow", 96),
        wit::Decision::Deny(_) => ("deny", 0),
        wit::Decision::Transform(rows) => ("transform", rows.at.len()),
        wit::Decision::Copy(_) => ("copy", 96),
    }
}

fn native_outcome(d: &wattlet_policy::Decision) -> (&'static str, usize) {
    match d {
        wattlet_policy::Decision::Allow => ("allow", 96),
        wattlet_policy::Decision::Deny(_) => ("deny", 0),
        wattlet_policy::Decision::Transform(rows) => ("transform", rows.len()),
        wattlet_policy::Decision::Copy(_) => ("copy", 96),
    }
}

fn main() -> anyhow::Result<()> {
    let calls: u32 = std::env::var("WATTLET_POLICY_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let engine = runtime::engine()?;
    let mut linker: Linker<HostState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let retention = runtime::link(
        &linker,
        &components::locate("wattlet-policy-retention", None)?,
        "retention-policy",
        bindings::retention::RetentionPolicyPre::new,
    )?;
    let aggregate = runtime::link(
        &linker,
        &components::locate("wattlet-policy-researchers-aggregate", None)?,
        "researchers-aggregate-policy",
        bindings::aggregate::ResearchersAggregatePolicyPre::new,
    )?;

    let rows = day();
    let context = context();
    let (wit_rows, wit_context) = (wit_rows(&rows), wit_context(&context));
    let object = wattlet_policy::ObjectKind::Measurements;
    let wit_object = wit::ObjectKind::Measurements;
    let keep = r#"{"months":24}"#;
    let step = r#"{"step_minutes":15}"#;

    println!("policy call, 96 rows x 2 registers, median of 5 rounds of {calls} calls:");
    println!(
        "{:<34} {:>10} {:>14} {:>14} {:>12}",
        "policy", "native", "wasm (warm)", "wasm (fresh)", "warm/native"
    );

    // Retention: every row is recent, so `allow`.
    let native = time(calls, || {
        black_box(wattlet_policy_retention::Retention::read(
            keep,
            object,
            &context,
            black_box(rows.clone()),
        ));
    });
    let mut store = sandbox::store(&engine, &LIMITS);
    let instance = retention.instantiate(&mut store)?;
    let hooks = instance.wattlet_policy_retention();
    let call = |store: &mut wasmtime::Store<HostState>| {
        sandbox::arm(store, LIMITS.call);
        hooks
            .call_read(store, keep, wit_object, &wit_context, black_box(&wit_rows))
            .expect("retention read")
    };
    let answer = call(&mut store);
    let expected = native_outcome(&wattlet_policy_retention::Retention::read(
        keep,
        object,
        &context,
        rows.clone(),
    ));
    assert_eq!(outcome(&answer), expected, "component and library disagree");
    let warm = time(calls, || {
        black_box(call(&mut store));
    });
    let fresh = time(calls / 10, || {
        let mut store = sandbox::store(&engine, &LIMITS);
        let instance = retention.instantiate(&mut store).expect("instance");
        sandbox::arm(&mut store, LIMITS.call);
        black_box(
            instance
                .wattlet_policy_retention()
                .call_read(&mut store, keep, wit_object, &wit_context, &wit_rows)
                .expect("retention read"),
        );
    });
    let instantiate = time(calls / 10, || {
        let mut store = sandbox::store(&engine, &LIMITS);
        black_box(retention.instantiate(&mut store).expect("instance"));
    });
    report("retention (allow)", native, warm, fresh);

    // Researchers-aggregate: 96 aggregates back.
    let native = time(calls, || {
        black_box(
            wattlet_policy_researchers_aggregate::ResearchersAggregate::read(
                step,
                object,
                &context,
                black_box(rows.clone()),
            ),
        );
    });
    let mut store = sandbox::store(&engine, &LIMITS);
    let instance = aggregate.instantiate(&mut store)?;
    let hooks = instance.wattlet_policy_researchers_aggregate();
    let call = |store: &mut wasmtime::Store<HostState>| {
        sandbox::arm(store, LIMITS.call);
        hooks
            .call_read(store, step, wit_object, &wit_context, black_box(&wit_rows))
            .expect("aggregate read")
    };
    let answer = call(&mut store);
    let expected = native_outcome(
        &wattlet_policy_researchers_aggregate::ResearchersAggregate::read(
            step,
            object,
            &context,
            rows.clone(),
        ),
    );
    assert_eq!(outcome(&answer), expected, "component and library disagree");
    assert_eq!(expected, ("transform", 96));
    let warm = time(calls, || {
        black_box(call(&mut store));
    });
    let fresh = time(calls / 10, || {
        let mut store = sandbox::store(&engine, &LIMITS);
        let instance = aggregate.instantiate(&mut store).expect("instance");
        sandbox::arm(&mut store, LIMITS.call);
        black_box(
            instance
                .wattlet_policy_researchers_aggregate()
                .call_read(&mut store, step, wit_object, &wit_context, &wit_rows)
                .expect("aggregate read"),
        );
    });
    report("researchers-aggregate (transform)", native, warm, fresh);
    println!(
        "instantiating a policy component alone: {:.2} µs (part of every 'fresh' figure)",
        us(instantiate)
    );
    Ok(())
}

fn report(what: &str, native: Duration, warm: Duration, fresh: Duration) {
    println!(
        "{what:<34} {:>7.2} µs {:>11.2} µs {:>11.2} µs {:>11.1}x",
        us(native),
        us(warm),
        us(fresh),
        warm.as_secs_f64() / native.as_secs_f64()
    );
}
