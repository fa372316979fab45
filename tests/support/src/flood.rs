//! Hostile clients on loopback: many connections that hold a server's resources without
//! finishing a request, each reconnecting when the server closes it, until stopped.
//!
//! ```ignore
//! let flood = Flood::start(server.addr, 300, Attack::SlowHeaders);
//! // … the server must still answer others …
//! let stats = flood.stop().await;
//! assert!(stats.closed_by_server > 0);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How each client misbehaves.
#[derive(Debug, Clone)]
pub enum Attack {
    /// Connects and sends nothing.
    Idle,
    /// Sends a request line, then one more header line every [`TRICKLE`], never ending the
    /// head (slowloris).
    SlowHeaders,
    /// Sends a complete head announcing a large body to `path`, then one body byte every
    /// [`TRICKLE`].
    SlowBody { path: String },
}

/// The pause between the bytes a slow client sends.
pub const TRICKLE: Duration = Duration::from_millis(300);

/// What the clients saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Connections they opened.
    pub opened: u64,
    /// Connections the server closed (or answered) while the client was still sending.
    pub closed_by_server: u64,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    closed_by_server: AtomicU64,
}

/// A flood of clients, running until [`Flood::stop`] (or dropped).
pub struct Flood {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    counters: Arc<Counters>,
}

impl Flood {
    /// Starts `clients` clients against `addr` on the current tokio runtime.
    pub fn start(addr: SocketAddr, clients: usize, attack: Attack) -> Flood {
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let attack = attack.clone();
            let counters = counters.clone();
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = client(addr, &attack, &counters) => {}
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
            });
        }
        Flood {
            stop,
            tasks,
            counters,
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        Stats {
            opened: self.counters.opened.load(Ordering::Relaxed),
            closed_by_server: self.counters.closed_by_server.load(Ordering::Relaxed),
        }
    }

    /// Stops every client (closing its connection) and returns what they saw.
    pub async fn stop(mut self) -> Stats {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.stats()
    }
}

/// One client: connects, misbehaves until the server closes the connection, reconnects.
async fn client(addr: SocketAddr, attack: &Attack, counters: &Counters) {
    loop {
        let connected =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
        let Ok(Ok(mut stream)) = connected else {
            // Refused, or the backlog is full: try again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        counters.opened.fetch_add(1, Ordering::Relaxed);
        misbehave(&mut stream, attack).await;
        counters.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}

/// Returns when the server closed the connection (or answered).
async fn misbehave(stream: &mut TcpStream, attack: &Attack) {
    let head = match attack {
        Attack::Idle => {
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte).await;
            return;
        }
        Attack::SlowHeaders => "GET /probe/hello HTTP/1.1\r\nhost: flood\r\n".to_owned(),
        Attack::SlowBody { path } => {
            format!("POST {path} HTTP/1.1\r\nhost: flood\r\ncontent-length: 1000000\r\n\r\n")
        }
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (mut read, mut write) = stream.split();
    let trickle = async {
        for n in 0u64.. {
            tokio::time::sleep(TRICKLE).await;
            let more = match attack {
                Attack::SlowHeaders => format!("x-slow-{n}: 1\r\n").into_bytes(),
                _ => b"a".to_vec(),
            };
            if write.write_all(&more).await.is_err() {
                return;
            }
        }
    };
    let mut buffer = [0u8; 512];
    tokio::select! {
        () = trickle => {}
        _ = read.read(&mut buffer) => {}
    }
}
