//! Prometheus metrics as a scraper sees them.

use std::net::SocketAddr;

/// `GET /metrics` from an admin listener: the whole HTTP answer, headers included.
pub fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics listener");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nhost: metrics\r\n\r\n")
        .expect("request");
    let mut page = String::new();
    stream.read_to_string(&mut page).expect("response");
    page
}

/// The value of one sample line of a Prometheus text page, 0 when absent.
pub fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The value of the first sample line of a Prometheus text page that starts with `prefix` (a
/// metric's name and the start of its labels, e.g. `name{`), if there is one.
pub fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
