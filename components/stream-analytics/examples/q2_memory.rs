//! The heap Q2's state holds (a counting allocator around the operator) and its snapshot's size,
//! after generated events of HOUSES houses of 53 plugs each (the full scale's average) over
//! HOURS hours: with 25 h the 24 h window is full.
//!
//! `cargo run --release -p wattlet-stream-analytics --example q2_memory [HOUSES [HOURS]]`
//! (defaults 1 and 25; `40 25` is a day at the challenge's full scale, ~135 M events, ~6 GB of
//! events held in memory while it runs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use wattlet_stream_analytics::generate::{GenConfig, Generator};
use wattlet_stream_analytics::{Config, Event, Pipeline, Queries};

/// Counts the heap bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let mut args = std::env::args().skip(1);
    let houses: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let hours: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(25);
    let config = GenConfig {
        seed: 2,
        duration: hours * 3600,
        houses,
        plugs: houses * 53,
        ..GenConfig::default()
    };
    let events: Vec<Event> = Generator::new(config).collect();
    let q2 = Config {
        queries: Queries {
            forecast: false,
            outliers: true,
        },
        per_house: false,
        ..Config::default()
    };
    let before = IN_USE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut pipeline = Pipeline::new(q2);
    for (i, e) in events.iter().enumerate() {
        pipeline.push(e);
        if i % 10_000_000 == 9_999_999 {
            eprintln!("{} of {} events", i + 1, events.len());
        }
    }
    let took = started.elapsed();
    let heap = IN_USE.load(Ordering::Relaxed) - before;
    let mib = |bytes: f64| bytes / f64::from(1 << 20);
    println!(
        "Q2, {houses} house(s) of 53 plugs, {hours} h: {} events in {:.1} s; state {:.1} MiB \
         ({:.1} MiB per house), snapshot {:.1} MiB",
        events.len(),
        took.as_secs_f64(),
        mib(heap as f64),
        mib(heap as f64) / f64::from(houses),
        mib(pipeline.snapshot().len() as f64)
    );
}
