//! The keys of a `RUN --mount` value, checked as BuildKit checks them
//! before kiln reads the value: every key must be one BuildKit knows (with
//! a suggestion), `type` one of its types, and a few keys belong to certain
//! types only. Keys a type does not use are otherwise ignored, as there.

use super::runmount::MountError;
use crate::frontend::diag::closest;

/// Every key BuildKit's mount parser knows.
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// BuildKit's mount types.
const TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];

/// ` (did you mean X?)` when `word` is close to one of `candidates`.
fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map(|c| format!(" (did you mean {c}?)")).unwrap_or_default()
}

/// Checks `spec`'s keys in order, as BuildKit's `parseMount` does.
pub fn check(spec: &str) -> Result<(), MountError> {
    let mut kind = "bind".to_string();
    let mut seen: Vec<String> = Vec::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let secretish = kind == "secret" || kind == "ssh";
        match (key.as_str(), value) {
            ("readonly" | "ro" | "readwrite" | "rw", _) => {}
            ("required", _) if secretish => {}
            ("required", _) => return Err(MountError::NotForType { key, kind }),
            (_, None) => return Err(MountError::NotKeyValue(field.to_string())),
            ("type", Some(v)) => {
                let lower = v.to_ascii_lowercase();
                if !TYPES.contains(&lower.as_str()) {
                    return Err(MountError::UnsupportedType { value: v.to_string(), hint: hint(v, TYPES) });
                }
                kind = lower;
            }
            ("size", _) if kind != "tmpfs" => return Err(MountError::NotForType { key, kind }),
            (k, _) if !KEYS.contains(&k) => {
                let hint = hint(k, KEYS);
                return Err(MountError::UnexpectedKey { key, field: field.to_string(), hint });
            }
            _ => {}
        }
        seen.push(key);
    }
    let has = |k: &str| seen.iter().any(|s| s == k);
    if !matches!(kind.as_str(), "secret" | "ssh" | "cache") {
        if let Some(key) = ["mode", "uid", "gid"].into_iter().find(|k| has(k)) {
            return Err(MountError::FileInfoNotAllowed { key, kind });
        }
    }
    if kind == "secret" && has("from") {
        return Err(MountError::SecretFrom);
    }
    if has("sharing") && kind != "cache" {
        return Err(MountError::SharingNotCache(kind));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BuildKit's testMountInvalid and the rules of its `parseMount`.
    #[test]
    fn keys_read_like_buildkit() {
        let err = |spec: &str| check(spec).unwrap_err().to_string();
        assert_eq!(err("typ=tmpfs"), "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)");
        assert_eq!(err("type=tmp"), "unsupported mount type \"tmp\" (did you mean tmpfs?)");
        assert_eq!(err("type=bind,target=/a,size=1m"), "unexpected key 'size' for mount type 'bind'");
        assert_eq!(err("type=cache,target=/a,required"), "unexpected key 'required' for mount type 'cache'");
        assert_eq!(err("type=bind,target=/a,mode=0700"), "mode not allowed for \"bind\" type mounts");
        assert_eq!(err("type=tmpfs,target=/a,sharing=locked"), "invalid cache sharing set for tmpfs mount");
        assert_eq!(err("type=secret,id=a,from=b"), "secret mount should not have a from");
        assert_eq!(err("type=cache,target"), "invalid field 'target' must be a key=value pair");
        for ok in
            ["type=secret,id=a,required", "type=tmpfs,target=/t,ro", "type=bind,target=/a,id=x,env=Y", "target=/a,rw"]
        {
            assert!(check(ok).is_ok(), "{ok}");
        }
    }
}
