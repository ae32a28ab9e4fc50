//! The connection loop: `axum::serve`'s, with hyper's per-connection read
//! buffer bounded.
//!
//! hyper grows a connection's read buffer while reads fill it, up to about
//! 408 KiB, and keeps it for as long as the connection lives. A client that
//! sent one 100 KB batch body leaves its idle keep-alive connection holding
//! that much. Measured with 1,000 connections each sending 1,000-request
//! batches: peak memory 354-359 MB with hyper's bound, 162-176 MB with
//! this one, at the same throughput.
//!
//! `axum::serve` does not expose hyper's settings, so this is its loop (one
//! task per connection, HTTP/1.1 only as before, graceful shutdown) with
//! [`READ_BUFFER`] as the bound.

use axum::body::Body;
use axum::extract::Request;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tower::{Service, ServiceExt};

/// Most bytes hyper buffers from one connection ahead of the handler
/// reading them (hyper's least is 8 KiB, its default about 408 KiB).
pub const READ_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// connections' requests in flight finish.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = Builder::new();
    builder.max_buf_size(READ_BUFFER);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, remote) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let service = match make_service.call(remote).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let service = TowerToHyperService::new(
            service.map_request(|request: Request<Incoming>| request.map(Body::new)),
        );
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
