//! `RUN --mount=…` values (after word expansion), as BuildKit reads them:
//! `type=` defaults to `bind`; relative targets are relative to WORKDIR.

use crate::graph::{CacheSharing, RunMount, SecretMount};

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedMount {
    /// `type=secret`.
    Secret(SecretMount),
    /// `type=cache|bind|tmpfs`; a bind's `from=` is still a name.
    Other(RunMount, Option<String>),
}

/// A `--mount` value kiln cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// A cache, bind or tmpfs mount without a target.
    #[error("RUN --mount=type={0} needs a target")]
    NoTarget(&'static str),
    /// `type=ssh`.
    #[error(
        "RUN --mount=type=ssh is not supported: kiln forwards no SSH agent; pass a deploy key or token as a build \
         secret (--mount=type=secret) instead"
    )]
    Ssh,
    /// A type BuildKit does not have (with a suggestion).
    #[error("unsupported mount type {value:?}{hint}")]
    UnsupportedType {
        /// The type.
        value: String,
        /// ` (did you mean …?)` or nothing.
        hint: String,
    },
    /// A key no mount type has (with a suggestion).
    #[error("unexpected key '{key}' in '{field}'{hint}")]
    UnexpectedKey {
        /// The key.
        key: String,
        /// The field it came in.
        field: String,
        /// ` (did you mean …?)` or nothing.
        hint: String,
    },
    /// A key of another mount type (`size` on a bind, `required` on a cache).
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    NotForType {
        /// The key.
        key: String,
        /// The mount type.
        kind: String,
    },
    /// A field without `=` other than the boolean ones.
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    /// `mode`, `uid` or `gid` on a bind or tmpfs mount.
    #[error("{key} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed {
        /// The key.
        key: &'static str,
        /// The mount type.
        kind: String,
    },
    /// `sharing` on a mount that is not a cache.
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(String),
    /// `from` on a secret.
    #[error("secret mount should not have a from")]
    SecretFrom,
    /// Both `source` and `id` on a secret.
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    /// A value that does not parse (a boolean, a number, a sharing mode).
    #[error("invalid --mount {key}={value}{expected}")]
    BadValue {
        /// The option.
        key: String,
        /// Its value.
        value: String,
        /// What was expected (`: expected …`, or nothing).
        expected: &'static str,
    },
    /// `type=tmpfs,size=` that is not a size.
    #[error(transparent)]
    Size(#[from] crate::units::SizeError),
    /// A cache seeded from a stage.
    #[error(
        "RUN --mount=type=cache,from=… (seeding a cache from a stage) is not supported by kiln; copy the files into \
         the cache in the step instead"
    )]
    CacheFrom,
    /// A secret with neither id, source nor target.
    #[error("invalid secret mount. one of source, target required")]
    SecretWithoutId,
}

/// Parses one `--mount` value; `workdir` anchors relative targets.
pub fn parse(spec: &str, workdir: &str) -> Result<ParsedMount, MountError> {
    super::mountkeys::check(spec)?;
    let fields: Vec<(String, String)> = spec
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or((f, "true"));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let get = |names: &[&str]| fields.iter().rev().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone());
    let kind = get(&["type"]).unwrap_or_else(|| "bind".into());
    let target = get(&["target", "dst", "destination"]).map(|t| crate::frontend::paths::join_path(workdir, &t));
    match kind.as_str() {
        "secret" => secret(&fields, target),
        "cache" => cache(&fields, target.ok_or(MountError::NoTarget("cache"))?).map(|m| ParsedMount::Other(m, None)),
        "bind" => {
            let target = target.ok_or(MountError::NoTarget("bind"))?;
            let readwrite = flag(&fields, &["rw", "readwrite"])?.unwrap_or(false)
                && !flag(&fields, &["ro", "readonly"])?.unwrap_or(false);
            let source = get(&["source", "src"]).unwrap_or_else(|| "/".into());
            Ok(ParsedMount::Other(RunMount::Bind { target, source, from_input: None, readwrite }, get(&["from"])))
        }
        "tmpfs" => {
            let target = target.ok_or(MountError::NoTarget("tmpfs"))?;
            let size = get(&["size"]).map(|s| crate::units::parse_size(&s)).transpose()?;
            Ok(ParsedMount::Other(RunMount::Tmpfs { target, size }, None))
        }
        "ssh" => Err(MountError::Ssh),
        other => unreachable!("mountkeys::check accepted type {other}"),
    }
}

/// A boolean option (`rw`, `rw=true`, `rw=false`), last one wins.
fn flag(fields: &[(String, String)], names: &[&str]) -> Result<Option<bool>, MountError> {
    match fields.iter().rev().find(|(k, _)| names.contains(&k.as_str())) {
        None => Ok(None),
        Some((k, v)) => v.parse().map(Some).map_err(|_| bad_value(k, v, ": expected true or false")),
    }
}

fn bad_value(key: &str, value: &str, expected: &'static str) -> MountError {
    MountError::BadValue { key: key.to_string(), value: value.to_string(), expected }
}

fn number(fields: &[(String, String)], key: &str, radix: u32, default: u32) -> Result<u32, MountError> {
    match fields.iter().rev().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => u32::from_str_radix(v, radix).map_err(|_| bad_value(key, v, "")),
    }
}

fn cache(fields: &[(String, String)], target: String) -> Result<RunMount, MountError> {
    if fields.iter().any(|(k, _)| k == "from" || k == "source" || k == "src") {
        return Err(MountError::CacheFrom);
    }
    let sharing = match fields.iter().rev().find(|(k, _)| k == "sharing").map(|(_, v)| v.as_str()) {
        None | Some("shared") => CacheSharing::Shared,
        Some("private") => CacheSharing::Private,
        Some("locked") => CacheSharing::Locked,
        Some(other) => return Err(bad_value("sharing", other, ": expected shared, private or locked")),
    };
    let id = fields.iter().rev().find(|(k, _)| k == "id").map(|(_, v)| v.clone()).unwrap_or_else(|| target.clone());
    Ok(RunMount::Cache {
        target,
        id,
        sharing,
        uid: number(fields, "uid", 10, 0)?,
        gid: number(fields, "gid", 10, 0)?,
        mode: number(fields, "mode", 8, 0o755)?,
        readonly: flag(fields, &["ro", "readonly"])?.unwrap_or(false),
    })
}

fn secret(fields: &[(String, String)], target: Option<String>) -> Result<ParsedMount, MountError> {
    let get = |key: &str| fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let source = get("source").or_else(|| get("src"));
    if source.is_some() && get("id").is_some() {
        return Err(MountError::SecretSourceAndId);
    }
    let mut m = SecretMount {
        id: get("id").or(source).unwrap_or_default(),
        target,
        env: get("env"),
        required: flag(fields, &["required"])?.unwrap_or(false),
        mode: number(fields, "mode", 8, 0o400)?,
        uid: number(fields, "uid", 10, 0)?,
        gid: number(fields, "gid", 10, 0)?,
    };
    if m.id.is_empty() {
        let from_target = m.target.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("");
        if from_target.is_empty() {
            return Err(MountError::SecretWithoutId);
        }
        m.id = from_target.to_string();
    }
    if m.target.is_none() && m.env.is_none() {
        m.target = Some(format!("/run/secrets/{}", m.id));
    }
    Ok(ParsedMount::Secret(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildkit_defaults() {
        let ParsedMount::Other(m, from) = parse("target=src,from=build,source=/out", "/app").unwrap() else { panic!() };
        assert_eq!(
            m,
            RunMount::Bind { target: "/app/src".into(), source: "/out".into(), from_input: None, readwrite: false }
        );
        assert_eq!(from.as_deref(), Some("build"));
        let ParsedMount::Other(c, _) =
            parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000", "/").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            c,
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                sharing: CacheSharing::Locked,
                uid: 1000,
                gid: 0,
                mode: 0o700,
                readonly: false
            }
        );
        let ParsedMount::Other(t, _) = parse("type=tmpfs,target=/tmp,size=64m", "/").unwrap() else { panic!() };
        assert_eq!(t, RunMount::Tmpfs { target: "/tmp".into(), size: Some(64 << 20) });
        let ParsedMount::Secret(s) = parse("type=secret,id=npmrc", "/").unwrap() else { panic!() };
        assert_eq!(s.target.as_deref(), Some("/run/secrets/npmrc"));
    }

    #[test]
    fn clear_errors() {
        assert_eq!(parse("type=ssh", "/"), Err(MountError::Ssh));
        assert_eq!(parse("type=cache", "/"), Err(MountError::NoTarget("cache")));
        let wide = parse("type=cache,target=/c,sharing=wide", "/").unwrap_err();
        assert_eq!(wide.to_string(), "invalid --mount sharing=wide: expected shared, private or locked");
        let colour = parse("type=bind,target=/c,colour=red", "/").unwrap_err();
        assert_eq!(colour.to_string(), "unexpected key 'colour' in 'colour=red'");
        let volume = parse("type=volume,target=/c", "/").unwrap_err();
        assert_eq!(volume.to_string(), "unsupported mount type \"volume\"");
        assert!(matches!(parse("type=tmpfs,target=/t,size=lots", "/"), Err(MountError::Size(_))));
    }
}
