//! The rest of the surface: health, readiness, the public key, request
//! ids, metrics and the signed admin endpoints.

use super::*;
use crate::wire::admin_signature;
use axum::body::Body;
use axum::http::{Request, StatusCode};

#[tokio::test]
async fn health_and_readiness() {
    let f = fixture();
    let (status, _, body) = send(app(f.state.clone()), Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"OK"[..]));
    let (status, _, _) = send(app(f.state.clone()), Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    f.state.lifecycle.begin_drain();
    let (status, _, body) = send(app(f.state.clone()), Request::get("/ready").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn the_public_key_is_404_without_build_secrets() {
    let f = fixture();
    let (status, reply) =
        send_json(app(f.state.clone()), Request::get("/publickey").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(reply["error"].as_str().unwrap().contains("build secrets"));
}

#[tokio::test]
async fn every_reply_carries_the_request_id_of_its_audit_record() {
    let f = fixture();
    let (_, headers, _) = send(app(f.state.clone()), post_build(b"x".to_vec(), None, &[])).await;
    let id = headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(f.audit_lines()[0]["request_id"], id.as_str());
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_code() {
    let f = fixture();
    let _ = send(app(f.state.clone()), post_build(b"x".to_vec(), None, &[])).await;
    let _ = send(app(f.state.clone()), signed(request(local_only("r.example/fn:1"), LAYERLESS))).await;
    let (status, _, body) =
        send(metrics_app(f.state.clone()), Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(r#"kiln_http_requests_total{route="/build",code="401"} 1"#), "{text}");
    assert!(text.contains(r#"kiln_http_requests_total{route="/build",code="200"} 1"#), "{text}");
    assert!(text.contains("kiln_build_duration_seconds"), "{text}");
    assert!(text.contains("kiln_builds_in_flight 0"), "{text}");
}

fn admin_request(method: &str, path: &str, timestamp: i64) -> Request<Body> {
    let sig = admin_signature(SECRET, method, path, timestamp, b"");
    Request::builder()
        .method(method)
        .uri(path)
        .header(crate::wire::ADMIN_TIMESTAMP_HEADER, timestamp.to_string())
        .header(crate::wire::ADMIN_SIGNATURE_HEADER, sig)
        .body(Body::empty())
        .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn a_signed_prune_runs() {
    let f = fixture();
    let (status, _, body) = send(metrics_app(f.state.clone()), admin_request("POST", "/cache/prune", now())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn admin_endpoints_need_a_fresh_signature() {
    let f = fixture();
    let unsigned = Request::get("/cache").body(Body::empty()).unwrap();
    let (status, _, _) = send(metrics_app(f.state.clone()), unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = send(metrics_app(f.state.clone()), admin_request("GET", "/cache", now())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let stale = admin_request("GET", "/cache", now() - 3600);
    let (status, _, _) = send(metrics_app(f.state.clone()), stale).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an hour-old signature is refused");
    let replayed_elsewhere = {
        let mut r = admin_request("GET", "/cache", now());
        *r.uri_mut() = "/doctor".parse().unwrap();
        r
    };
    let (status, _, _) = send(metrics_app(f.state.clone()), replayed_elsewhere).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a signature covers its path");
}
