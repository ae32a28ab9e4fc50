//! Operations routes: liveness, readiness and Prometheus metrics, without credentials.

use crate::common::{spawn_app, Db};
use serde_json::json;

#[tokio::test]
async fn operations_routes_answer() {
    let app = spawn_app(Db::Sqlite).await;
    let (status, body) = app.get_with(None, "/healthz").await;
    assert_eq!((status, body["status"].clone()), (200, json!("ok")));
    let (status, body) = app.get_with(None, "/readyz").await;
    assert_eq!((status, body["database"].clone()), (200, json!("ok")));
    app.decide("nobody", "read", "Asset", "nothing").await;
    let text = app.metrics().await;
    assert!(text.contains("warden_decisions_total"), "{text}");
}

/// The benchmark endpoints (the floor, the fact load) exist only with
/// --bench-endpoints, and then like /v1/check: an API key whose scope
/// allows `decide`.
#[tokio::test]
async fn the_bench_endpoint_is_off_by_default_and_keyed_when_on() {
    let off = crate::common::spawn_app(crate::common::Db::Sqlite).await;
    let (status, _) = off.get("/v1/bench/select?asset=a").await;
    assert_eq!(status, 404);
    let on = crate::common::spawn_configured(crate::common::Db::Sqlite, None, None, |s| {
        s.bench_endpoints = true
    })
    .await;
    on.import(
        &serde_json::json!({"users": [{"id": "o", "kind": "registered"}],
        "workspaces": [{"id": "w", "owner": "o"}], "projects": [{"id": "p", "workspace": "w"}],
        "assets": [{"id": "a", "project": "p"}]}),
    )
    .await;
    let (status, body) = on.get("/v1/bench/select?asset=a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "a");
    let (status, _) = on.get_with(None, "/v1/bench/select?asset=a").await;
    assert_eq!(status, 401);
    let admin_only = on.key_with_scopes(&["admin"]).await;
    let (status, _) = on
        .get_with(Some(&admin_only), "/v1/bench/select?asset=a")
        .await;
    assert_eq!(status, 403);
    // The fact load of one check: the same key rules, the asset as loaded.
    let (status, _) = off.get("/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 404);
    let (status, body) = on.get("/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["project"], "p");
    let (status, _) = on.get_with(None, "/v1/bench/facts?user=o&asset=a").await;
    assert_eq!(status, 401);
    let (status, _) = on
        .get_with(Some(&admin_only), "/v1/bench/facts?user=o&asset=a")
        .await;
    assert_eq!(status, 403);
}

/// Sends a `GET /healthz` on `stream` and reads its answer; the
/// connection stays open (keep-alive).
async fn health_on(stream: &mut tokio::net::TcpStream) -> String {
    ask_health(stream).await;
    health_answer(stream).await
}

/// Sends a `GET /healthz` on `stream`.
async fn ask_health(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: warden\r\n\r\n")
        .await
        .unwrap();
}

/// Reads the answer to [`ask_health`] (up to the end of the health body).
async fn health_answer(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("\"ok\"") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Whether the server closes `stream` (end of file or reset) within `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut rest))
        .await
        .is_ok()
}

/// A connection that sends half a request head, one that sends nothing, and
/// one left idle after a request are closed after the idle timeout, not
/// before; the server goes on serving.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_after_the_idle_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let timeout = Duration::from_millis(600);
    let app = crate::common::spawn_configured(Db::Sqlite, None, None, |settings| {
        settings.connections.idle_timeout = timeout;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let start = Instant::now();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: warden\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert!(health_on(&mut idle).await.starts_with("HTTP/1.1 200"));
    for (what, stream) in [
        ("half a head", &mut half),
        ("nothing sent", &mut silent),
        ("idle after a request", &mut idle),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(10)).await,
            "{what}: still open"
        );
        assert!(
            start.elapsed() >= timeout - Duration::from_millis(50),
            "{what}: closed before the idle timeout"
        );
    }
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
}

/// Every response tells the client how long an idle connection is kept
/// (`Keep-Alive: timeout=N`, whole seconds of `--idle-timeout`), and the
/// server keeps it that long: a client honouring the hint never sends on a
/// connection the server is closing.
#[tokio::test]
async fn responses_say_how_long_an_idle_connection_is_kept() {
    use std::time::Duration;
    use tokio::net::TcpStream;
    let app = crate::common::spawn_app(Db::Sqlite).await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["keep-alive"], "timeout=30");

    let app = crate::common::spawn_configured(Db::Sqlite, None, None, |settings| {
        settings.connections.idle_timeout = Duration::from_millis(2_500);
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let answer = health_on(&mut stream).await.to_ascii_lowercase();
    assert!(answer.contains("\r\nkeep-alive: timeout=2\r\n"), "{answer}");
    // Idle for just under the two seconds promised: still served.
    tokio::time::sleep(Duration::from_millis(1_900)).await;
    let again = health_on(&mut stream).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

/// Past `--max-connections`, a new connection waits unaccepted: its request
/// is answered only once an open connection closes.
#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let app = crate::common::spawn_configured(Db::Sqlite, None, None, |settings| {
        settings.connections.max = 2;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut first = TcpStream::connect(&addr).await.unwrap();
    health_on(&mut first).await;
    let mut second = TcpStream::connect(&addr).await.unwrap();
    health_on(&mut second).await;
    // The third connects (the listen queue takes it) but is not served...
    let mut third = TcpStream::connect(&addr).await.unwrap();
    ask_health(&mut third).await;
    let waiting = tokio::time::timeout(Duration::from_millis(500), health_answer(&mut third)).await;
    assert!(
        waiting.is_err(),
        "a third connection was served past the cap of 2"
    );
    // ...until one of the two closes; then its request, already sent, is.
    first.shutdown().await.unwrap();
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), health_answer(&mut third))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(health_on(&mut second).await.starts_with("HTTP/1.1 200"));
}

/// The listen queue holds a burst of 1,200 new connections: with the one
/// connection the cap allows open, 1,200 more all connect at once (the
/// kernel completes and queues them unaccepted). With the 128 that tokio's
/// `TcpListener::bind` asks for (or 1,024) the kernel drops the SYNs past
/// the queue, and those clients wait at least a second to send theirs
/// again.
#[tokio::test]
async fn a_burst_of_connections_fits_the_listen_queue() {
    use std::time::Duration;
    use tokio::net::TcpStream;
    const BURST: usize = 1_200;
    let app = crate::common::spawn_configured(Db::Sqlite, None, None, |settings| {
        settings.connections.max = 1;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut served = TcpStream::connect(&addr).await.unwrap();
    health_on(&mut served).await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let addr = addr.clone();
        burst.spawn(async move {
            tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr)).await
        });
    }
    let mut queued = Vec::with_capacity(BURST);
    while let Some(connected) = burst.join_next().await {
        if let Ok(Ok(stream)) = connected.unwrap() {
            queued.push(stream);
        }
    }
    assert_eq!(
        queued.len(),
        BURST,
        "connections of the burst the listen queue took within 900 ms"
    );
    assert!(health_on(&mut served).await.starts_with("HTTP/1.1 200"));
}

/// The value of the series `series` (name and labels, as `/metrics` prints
/// them) in `text`; 0 when absent.
fn series_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every routed request is counted by method, route pattern and status and
/// timed in a histogram by method and route; the ids in a path never
/// become labels.
#[tokio::test]
async fn requests_are_counted_and_timed_by_route_pattern() {
    let app = spawn_app(Db::Sqlite).await;
    let route = r#"method="DELETE",route="/v1/admin/api-keys/{id}""#;
    let not_found = format!(r#"warden_http_requests_total{{{route},status="404"}}"#);
    let forbidden = format!(r#"warden_http_requests_total{{{route},status="401"}}"#);
    let timed = format!(r#"warden_http_request_duration_seconds_count{{{route}}}"#);
    let before = app.metrics().await;
    let id = "never-a-key-7f3a";
    let path = format!("/v1/admin/api-keys/{id}");
    for _ in 0..3 {
        let (status, _) = app.delete_with(Some(&app.admin_key), &path).await;
        assert_eq!(status, 404);
    }
    let (status, _) = app.delete_with(None, &path).await;
    assert_eq!(status, 401);
    let after = app.metrics().await;
    // Other tests share the process's recorder: at least these requests.
    assert!(
        series_value(&after, &not_found) >= series_value(&before, &not_found) + 3.0,
        "{after}"
    );
    assert!(
        series_value(&after, &forbidden) >= series_value(&before, &forbidden) + 1.0,
        "{after}"
    );
    assert!(
        series_value(&after, &timed) >= series_value(&before, &timed) + 4.0,
        "{after}"
    );
    // A histogram with buckets (they add up across replicas), up to the
    // request timeout.
    for le in ["0.0005", "0.01", "10", "+Inf"] {
        let bucket = format!(r#"warden_http_request_duration_seconds_bucket{{{route},le="{le}"}}"#);
        assert!(after.contains(&bucket), "{bucket} missing from {after}");
    }
    assert!(!after.contains(id), "a path id became a label: {after}");
    // /healthz is a route too; paths no route serves count as `unmatched`.
    app.get_with(None, "/healthz").await;
    let unmatched = r#"warden_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    let before = series_value(&app.metrics().await, unmatched);
    let (status, _) = app.get_with(None, "/v1/no-such-route-5c1e").await;
    assert_eq!(status, 404);
    let text = app.metrics().await;
    assert!(
        text.contains(r#"warden_http_requests_total{method="GET",route="/healthz",status="200"}"#),
        "{text}"
    );
    assert!(series_value(&text, unmatched) >= before + 1.0, "{text}");
    assert!(!text.contains("no-such-route"), "{text}");
}
