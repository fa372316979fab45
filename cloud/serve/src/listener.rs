//! The listener: accepts connections, completes the TLS handshake when the application serves
//! mutual TLS, and serves each connection's HTTP/1.1 requests through [`App`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use wattlet_tls::ClientIdentity;

use crate::app::App;
use crate::response::plain;
use crate::tls::TlsState;

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
/// line).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        // A streamed response goes out in several small writes (head, then each body chunk);
        // with Nagle's algorithm each later write would wait for the client's delayed ACK
        // (40 ms on Linux), which the p3 bench showed.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%client, %error, "cannot set TCP_NODELAY");
        }
        match app.tls().cloned() {
            None => {
                tokio::spawn(serve_connection(
                    app.clone(),
                    stream,
                    client,
                    local,
                    Peer::Anonymous,
                ));
            }
            Some(tls) => {
                tokio::spawn(serve_tls(app.clone(), tls, stream, client, local));
            }
        }
    }
}

/// Completes the handshake and serves the connection as the client certificate says.
async fn serve_tls(
    app: Arc<App>,
    tls: Arc<TlsState>,
    stream: TcpStream,
    client: SocketAddr,
    local: SocketAddr,
) {
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
    let peer = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
    {
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
    serve_connection(app, stream, client, local, peer).await;
}

async fn serve_connection<S>(
    app: Arc<App>,
    stream: S,
    client: SocketAddr,
    local: SocketAddr,
    peer: Peer,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let app = app.clone();
        let peer = peer.clone();
        async move {
            let response = match &peer {
                Peer::Anonymous => app.handle(request, client, local).await,
                Peer::Device(identity) => {
                    app.handle_with_identity(request, client, local, Some(identity))
                        .await
                }
                Peer::Unidentified(why) => plain(
                    StatusCode::FORBIDDEN,
                    &format!("client certificate not accepted: {why}\n"),
                ),
            };
            Ok::<_, Infallible>(response)
        }
    });
    if let Err(error) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%client, %error, "connection ended with an error");
    }
}
