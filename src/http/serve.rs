//! The connection loop: `axum::serve`'s (one task per connection, HTTP/1.1
//! only, graceful shutdown), with what `axum::serve` does not let one set:
//!
//! - **A bound on each connection's read buffer** ([`READ_BUFFER`]). hyper
//!   grows a connection's buffer while reads fill it, up to about 408 KiB,
//!   and a keep-alive connection that carried one 100 KB batch body keeps
//!   what it grew. Measured with 1,000 connections each sending
//!   1,000-request batches: peak memory 354-359 MB with hyper's bound,
//!   162-176 MB with this one, at the same throughput.
//! - **A time limit on request heads and idle connections**
//!   ([`Connections::idle_timeout`]). Without it a client that sends half a
//!   head, or opens connections and sends nothing, holds them for ever
//!   (the request timeout starts only once the head is read).
//! - **A cap on open connections** ([`Connections::max`]). Past it, new
//!   connections wait in the listen queue, unaccepted, until one closes.
//! - **A listen queue of [`LISTEN_BACKLOG`]** ([`bind`]), not the 128 that
//!   tokio's `TcpListener::bind` asks for (mio's, as the standard
//!   library's). 1,000 connections opened at once to a busy server
//!   overflowed it 662-708 times: the kernel dropped those SYNs, the
//!   clients waited a second or more to send them again, and wrk counted
//!   43-64 failed reads. With 4,096: no overflow, no error.
//! - **A `Keep-Alive: timeout=N` hint on every response** ([`keep_alive`]),
//!   N being the idle timeout in whole seconds. Clients that honour it
//!   (Node's `fetch`, i.e. undici, and Node's http agent) stop reusing a
//!   connection before Warden closes it, rather than sending a request on
//!   a connection as it closes and getting a reset instead of an answer.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

/// Most bytes hyper buffers from one connection ahead of the handler
/// reading them (hyper's least is 8 KiB, its default about 408 KiB). A
/// request head must fit in it: a larger one is answered 431.
pub const READ_BUFFER: usize = 64 * 1024;

/// Default cap on open connections: their read buffers stay under 256 MiB
/// however large the requests.
pub const MAX_CONNECTIONS: u32 = 4096;

/// Connections the kernel completes and queues before Warden accepts them
/// (the kernel caps it at `net.core.somaxconn`, 4,096 by default since
/// Linux 5.4). Also where connections past [`Connections::max`] wait.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a listen queue of [`LISTEN_BACKLOG`] (tokio's
/// `TcpListener::bind` always asks for 128), reusing the address as
/// tokio's does.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    /// Connections served at once.
    pub max: u32,
    /// Longest wait for a request head: from a connection's start, or from
    /// the end of its previous response (an idle keep-alive connection is
    /// closed after it).
    pub idle_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max: MAX_CONNECTIONS,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// `Keep-Alive` (the `http` crate names no constant for it).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The `Keep-Alive` response header for connections closed after
/// `idle_timeout` idle: `timeout=` the whole seconds in it, never more than
/// it (none under a second: the hint has no finer unit).
pub fn keep_alive(idle_timeout: Duration) -> Option<HeaderValue> {
    match idle_timeout.as_secs() {
        0 => None,
        seconds => HeaderValue::from_str(&format!("timeout={seconds}")).ok(),
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = Builder::new();
    builder
        .max_buf_size(READ_BUFFER)
        .timer(TokioTimer::new())
        .header_read_timeout(connections.idle_timeout);
    let hint = keep_alive(connections.idle_timeout);
    let slots = Arc::new(Semaphore::new(connections.max as usize));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (io, remote) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let service = match make_service.call(remote).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let hint = hint.clone();
        let service = TowerToHyperService::new(
            service
                .map_request(|request: Request<Incoming>| request.map(Body::new))
                .map_response(move |mut response: Response| {
                    if let Some(hint) = &hint {
                        response.headers_mut().insert(KEEP_ALIVE, hint.clone());
                    }
                    response
                }),
        );
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        metrics::gauge!("warden_http_connections").increment(1.0);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            metrics::gauge!("warden_http_connections").decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keep_alive_hint_never_outlasts_the_idle_timeout() {
        let hint = |millis| keep_alive(Duration::from_millis(millis));
        assert_eq!(hint(30_000), Some(HeaderValue::from_static("timeout=30")));
        assert_eq!(hint(2_999), Some(HeaderValue::from_static("timeout=2")));
        assert_eq!(hint(1_000), Some(HeaderValue::from_static("timeout=1")));
        assert_eq!(hint(600), None);
    }
}
