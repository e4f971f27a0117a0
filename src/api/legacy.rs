//! of-builder's request and reply (openfaas-cloud's open-source builder),
//! recognised without configuration:
//!
//! - **request**: a tar whose root holds `config` (not
//!   `com.openfaas.docker.config`) with `{"ref": …, "buildArgs": …,
//!   "frontend": …}`, keys matched case-insensitively as Go's
//!   `encoding/json` does (`Ref`, `REF`); `frontend` is ignored;
//! - **signature**: `X-Cloud-Signature` with `sha1=` or `sha256=` (HMAC-SHA1
//!   is accepted on this header only, never on `X-Build-Signature`);
//! - **reply**: `{"log": […], "imageName": "<ref as given>", "status":
//!   "success"}` with 200, or 500 with `"failure: <err>"` (the build or push
//!   failed) or `"unexpected failure: <err>"` (before the build, with
//!   `"log": null` and an empty `imageName`); the image is pushed to the
//!   lower-cased ref, as of-builder did.

use crate::wire::BuildConfig;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Serialize;
use std::collections::BTreeMap;

/// The legacy config entry's name.
pub const CONFIG_ENTRY: &str = "config";
/// of-builder's signature header.
pub const SIGNATURE_HEADER: &str = "x-cloud-signature";

/// Go's `encoding/json` key matching: case-insensitive with Unicode simple
/// folding (`ſ` is `s`, the Kelvin sign is `k`).
fn go_fold(key: &str) -> String {
    key.chars().flat_map(char::to_lowercase).map(|c| if c == 'ſ' { 's' } else { c }).collect()
}

/// A JSON object's members in document order (a later duplicate wins, as
/// in Go).
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    members.push(pair);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A legacy `config` kiln cannot build from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyConfigError {
    /// Not JSON, or not an object.
    #[error("config: invalid JSON: {0}")]
    Json(String),
    /// A member of the wrong type.
    #[error("config: {0}")]
    Member(String),
    /// No `ref`.
    #[error("no target reference to push")]
    NoReference,
}

/// Parses the legacy `config` into a build config whose `image` is the
/// lower-cased ref; also returns the ref as given (for `imageName`).
pub fn parse_config(raw: &[u8]) -> Result<(BuildConfig, String), LegacyConfigError> {
    let Members(members) = serde_json::from_slice(raw).map_err(|e| LegacyConfigError::Json(e.to_string()))?;
    let (mut reference, mut build_args) = (String::new(), None);
    for (key, value) in members {
        match go_fold(&key).as_str() {
            "ref" => reference = as_string(value, "ref")?,
            "buildargs" => build_args = as_args(value)?,
            _ => {} // `frontend` (kiln has its own) and anything unknown
        }
    }
    if reference.is_empty() {
        return Err(LegacyConfigError::NoReference);
    }
    let config = BuildConfig { image: reference.to_lowercase(), build_args, ..Default::default() };
    Ok((config, reference))
}

fn as_string(value: serde_json::Value, key: &str) -> Result<String, LegacyConfigError> {
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(LegacyConfigError::Member(format!("\"{key}\" must be a string, not {other}"))),
    }
}

fn as_args(value: serde_json::Value) -> Result<Option<BTreeMap<String, String>>, LegacyConfigError> {
    match value {
        serde_json::Value::Null => Ok(None),
        other => serde_json::from_value(other)
            .map(Some)
            .map_err(|e| LegacyConfigError::Member(format!("\"buildArgs\" must map strings to strings: {e}"))),
    }
}

fn sha1_mac(secret: &[u8], body: &[u8]) -> Hmac<sha1::Sha1> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac
}

/// `sha1=<hex>` HMAC, as openfaas-cloud's git-tar signs (for tests and tools).
pub fn sign_sha1(secret: &[u8], body: &[u8]) -> String {
    format!("sha1={}", hex::encode(sha1_mac(secret, body).finalize().into_bytes()))
}

#[derive(Serialize)]
struct Reply<'a> {
    log: Option<&'a [String]>,
    #[serde(rename = "imageName")]
    image_name: &'a str,
    status: String,
}

/// of-builder's reply (no content type of its own: Go sniffed plain text).
fn reply(code: StatusCode, log: Option<&[String]>, image_name: &str, status: String) -> Response {
    let body = serde_json::to_vec(&Reply { log, image_name, status }).expect("reply serializes");
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// A built and pushed image: 200.
pub fn success(log: &[String], image_name: &str) -> Response {
    reply(StatusCode::OK, Some(log), image_name, "success".into())
}

/// A build or push that failed: 500, `failure: <err>`.
pub fn failure(log: &[String], image_name: &str, error: &str) -> Response {
    reply(StatusCode::INTERNAL_SERVER_ERROR, Some(log), image_name, format!("failure: {error}"))
}

/// A request refused before its build: 500, `unexpected failure: <err>`.
pub fn unexpected_failure(error: &str) -> Response {
    reply(StatusCode::INTERNAL_SERVER_ERROR, None, "", format!("unexpected failure: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_as_go_matches_them() {
        let (c, given) = parse_config(br#"{"Ref":"Reg:5000/Foo/bar:Latest","frontend":"x"}"#).unwrap();
        assert_eq!((c.image.as_str(), given.as_str()), ("reg:5000/foo/bar:latest", "Reg:5000/Foo/bar:Latest"));
        assert_eq!(parse_config(br#"{"REF":"a/b"}"#).unwrap().1, "a/b");
        assert_eq!(parse_config(br#"{"ref":"first","rEf":"second"}"#).unwrap().1, "second", "the last one wins");
        let (c, _) = parse_config(r#"{"ref":"a","BUILDARGſ":{"K":"v"}}"#.as_bytes()).unwrap();
        assert_eq!(c.build_args.unwrap()["K"], "v", "ſ folds to s");
        assert_eq!(parse_config(br#"{"frontend":"x"}"#).unwrap_err(), LegacyConfigError::NoReference);
        assert_eq!(parse_config(br#"{"ref":""}"#).unwrap_err().to_string(), "no target reference to push");
        let wrong = parse_config(br#"{"ref":1}"#).unwrap_err();
        assert_eq!(wrong.to_string(), "config: \"ref\" must be a string, not 1");
    }

    fn verify(secret: &[u8], body: &[u8], header: &str) -> Result<(), String> {
        let mut expected = super::super::auth::Expected::cloud_signature(secret, header).map_err(|e| e.to_string())?;
        expected.update(body);
        expected.verify().map_err(|e| e.to_string())
    }

    #[test]
    fn both_prefixes_verify_and_errors_read_like_of_builder() {
        let body = b"tar bytes";
        assert_eq!(verify(b"s3cret", body, &sign_sha1(b"s3cret", body)), Ok(()));
        assert_eq!(verify(b"s3cret", body, &super::super::auth::sign(b"s3cret", body)), Ok(()));
        assert_eq!(
            verify(b"other", body, &sign_sha1(b"s3cret", body)).unwrap_err(),
            "invalid message digest or secret"
        );
        assert_eq!(verify(b"s3cret", body, "sha1=zz").unwrap_err(), "invalid message digest or secret");
        assert_eq!(
            verify(b"s3cret", body, "md5=00").unwrap_err(),
            "valid hash prefixes: [sha1=, sha256=], got: md5=00"
        );
    }
}
