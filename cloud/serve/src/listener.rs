//! The listener: accepts connections, completes the TLS handshake when the server speaks mutual
//! TLS, and serves each connection's HTTP/1.1 requests through a [`Handler`]: the application
//! ([`App`], `wattlet serve`) or the gateway ([`crate::gateway::Gateway`], `wattlet gateway`).
//!
//! What keeps it up under load and abuse (see [`crate::limits::Limits`]): accept errors pause
//! accepting and never end it (see [`wattlet_runtime::accept`]); at most `max_connections` are
//! open at once; hyper's header-read timer closes connections that are slow to send a request
//! head or idle between requests; a client certificate ends its connection when it expires. On
//! shutdown it stops accepting, lets each connection finish the request it is serving, and
//! waits for them (at most `shutdown_timeout`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use wattlet_runtime::accept::{Backoff, accept};
use wattlet_tls::ClientIdentity;

use crate::app::App;
use crate::limits::Limits;
use crate::response::{Body, plain};
use crate::tls::TlsState;

/// What a listener serves: each request, with the verified client certificate's identity.
pub trait Handler: Send + Sync + 'static {
    /// Connection and timing limits (the listener uses the connection cap, the header timeout
    /// and the shutdown timeout).
    fn limits(&self) -> &Limits;
    /// The mutual-TLS state, when the listener speaks TLS.
    fn tls(&self) -> Option<&Arc<TlsState>>;
    /// Answers one request; never fails: errors become 4xx/5xx responses.
    fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send;
}

impl Handler for App {
    fn limits(&self) -> &Limits {
        App::limits(self)
    }

    fn tls(&self) -> Option<&Arc<TlsState>> {
        App::tls(self)
    }

    fn handle(
        &self,
        request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
        identity: Option<&ClientIdentity>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.handle_with_identity(request, client, local, identity)
    }
}

/// What every handler does first with a request: removes the reserved headers no client may
/// send, refuses a certificate revoked since its handshake (403, logged) and sets the verified
/// identity's headers. `Some` is the answer to send instead.
pub fn admit(
    headers: &mut http::HeaderMap,
    tls: Option<&TlsState>,
    identity: Option<&ClientIdentity>,
    client: SocketAddr,
    path: &str,
) -> Option<Response<Body>> {
    crate::headers::strip_reserved(headers);
    let identity = identity?;
    if tls.is_some_and(|tls| tls.is_revoked(&identity.serial_hex)) {
        tracing::warn!(%client, device = %identity.device_id, serial = %identity.serial_hex, path = %path, "refused a request: the client certificate is revoked");
        return Some(plain(StatusCode::FORBIDDEN, "client certificate revoked\n"));
    }
    crate::headers::set_identity(headers, identity)
        .err()
        .map(|error| plain(StatusCode::BAD_REQUEST, &format!("{error}\n")))
}

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection.
#[derive(Clone)]
enum Peer {
    /// Plain HTTP, or TLS without a client certificate: no identity.
    Anonymous,
    /// A verified device certificate.
    Device(Arc<ClientIdentity>),
    /// A verified certificate that names no wattlet device: every request gets 403.
    Unidentified(Arc<str>),
}

/// Accepts connections until `shutdown` resolves; each connection is served in its own task.
/// With TLS configured (see [`crate::app::ServeOptions::tls`]) each connection first completes
/// a TLS 1.3 handshake with a verified client certificate; a failed handshake closes it (log
/// line). Then it stops accepting and returns once the open connections have finished their
/// requests in flight, or after the shutdown timeout.
pub async fn serve<H: Handler>(
    app: Arc<H>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let limits = app.limits().clone();
    let max_connections = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(max_connections));
    let (draining, drain) = watch::channel(false);
    let mut backoff = Backoff::default();
    tokio::pin!(shutdown);
    loop {
        // At the cap, wait for a connection to close before accepting the next one.
        let accepted = tokio::select! {
            accepted = async {
                let permit = open.clone().acquire_owned().await;
                (permit, accept(&listener, "http", &mut backoff).await)
            } => accepted,
            () = &mut shutdown => break,
        };
        let (Ok(permit), (stream, client)) = accepted else {
            break; // the semaphore is never closed
        };
        // A streamed response goes out in several small writes (head, then each body chunk);
        // with Nagle's algorithm each later write would wait for the client's delayed ACK
        // (40 ms on Linux), which the p3 bench showed.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%client, %error, "cannot set TCP_NODELAY");
        }
        let connection = Conn {
            app: app.clone(),
            client,
            local,
            drain: drain.clone(),
            _permit: permit,
        };
        match app.tls().cloned() {
            None => {
                tokio::spawn(connection.serve(stream, Peer::Anonymous, None));
            }
            Some(tls) => {
                tokio::spawn(serve_tls(connection, tls, stream));
            }
        }
    }
    drop(listener);
    let _ = draining.send(true);
    let in_flight = max_connections - open.available_permits();
    if in_flight > 0 {
        tracing::info!(connections = in_flight, timeout = ?limits.shutdown_timeout, "shutting down: waiting for requests in flight");
    }
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_timeout, open.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            connections = max_connections - open.available_permits(),
            "shutdown timeout: closing connections with requests still in flight"
        );
    }
    Ok(())
}

/// One accepted connection: what serving it needs, and its place among the open connections
/// (given back when it is dropped).
struct Conn<H> {
    app: Arc<H>,
    client: SocketAddr,
    local: SocketAddr,
    /// Becomes `true` when the server shuts down.
    drain: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

/// Completes the handshake and serves the connection as the client certificate says.
async fn serve_tls<H: Handler>(connection: Conn<H>, tls: Arc<TlsState>, stream: TcpStream) {
    let client = connection.client;
    let acceptor = tls.acceptor();
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%client, %error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%client, "TLS handshake timed out");
            return;
        }
    };
    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    let expires = certificate.and_then(|cert| match wattlet_tls::not_after(cert) {
        Ok(not_after) => Some(not_after),
        Err(error) => {
            tracing::warn!(%client, %error, "cannot read the client certificate's expiry");
            None
        }
    });
    let peer = match certificate {
        Some(cert) => match ClientIdentity::from_der(cert) {
            Ok(identity) => Peer::Device(Arc::new(identity)),
            Err(error) => {
                tracing::warn!(%client, %error, "client certificate names no device");
                Peer::Unidentified(error.to_string().into())
            }
        },
        // Only reachable with ClientAuth::Optional: rustls refuses the handshake otherwise.
        None => Peer::Anonymous,
    };
    connection.serve(stream, peer, expires).await;
}

impl<H: Handler> Conn<H> {
    /// Serves HTTP/1.1 on `stream` until the client closes it, it times out, the server shuts
    /// down or the client certificate expires (`expires`): then the request in flight is
    /// finished and the connection closed.
    async fn serve<S>(self, stream: S, peer: Peer, expires: Option<SystemTime>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            app,
            client,
            local,
            mut drain,
            _permit,
        } = self;
        let header_timeout = app.limits().header_timeout;
        let service = hyper::service::service_fn(move |request| {
            let app = app.clone();
            let peer = peer.clone();
            async move {
                // Checked per request too: a request may arrive just as the timer fires.
                let expired = expires.is_some_and(|at| SystemTime::now() >= at);
                let response = match &peer {
                    _ if expired => plain(StatusCode::FORBIDDEN, "client certificate expired\n"),
                    Peer::Anonymous => app.handle(request, client, local, None).await,
                    Peer::Device(identity) => {
                        app.handle(request, client, local, Some(identity)).await
                    }
                    Peer::Unidentified(why) => plain(
                        StatusCode::FORBIDDEN,
                        &format!("client certificate not accepted: {why}\n"),
                    ),
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let expiry = async {
            match expires {
                Some(at) => {
                    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                    tokio::time::sleep(left).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expiry);
        let mut ending = false;
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                _ = drain.wait_for(|draining| *draining), if !ending => {
                    ending = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = &mut expiry, if !ending => {
                    tracing::info!(%client, "client certificate expired: closing its connection");
                    ending = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%client, %error, "connection ended with an error");
        }
    }
}
