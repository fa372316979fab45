//! Routes that misbehave on purpose, for the host's limits: a request that never ends, one that
//! wants more memory than it may have, and one that waits (on the host) before it answers.

use std::time::Duration;

use spin_sdk::http::Response;

use crate::{Handled, text};

/// `GET /loop`: spins forever without calling the host; only the host's deadline stops it.
pub fn spin_forever() -> Handled {
    let mut turns: u64 = 0;
    loop {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
}

/// `GET /hog/<MiB>`: allocates and touches that much memory, 200 with the number of bytes.
pub fn hog(mib: &str) -> Handled {
    let mib: usize = mib
        .parse()
        .map_err(|_| text(400, format!("not a number of MiB: {mib:?}")))?;
    let mut memory = vec![0u8; mib << 20];
    // Write every page, so the memory is really used.
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    let touched = std::hint::black_box(&memory)
        .iter()
        .filter(|b| **b == 1)
        .count();
    Ok(text(
        200,
        format!("{} bytes in {touched} pages", memory.len()),
    ))
}

/// `GET /sleep/<ms>`: sleeps (a wasi:clocks wait, on the host), then 200 `slept`.
pub fn sleep(ms: &str) -> Handled {
    let ms: u64 = ms
        .parse()
        .map_err(|_| text(400, format!("not a number of milliseconds: {ms:?}")))?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(Response::new(200, "slept"))
}
