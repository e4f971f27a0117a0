//! The hostile request corpus: malformed, oversized and malicious
//! requests, each answered with the right 4xx and a clear message, with
//! nothing written outside the build's workspace (a canary directory that
//! every escaping path aims at stays empty) and the server healthy for the
//! next request. The tars are written byte by byte (the `tar` crate refuses
//! to write most of them).

mod support;

use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use support::*;

/// A raw tar being written: 512-byte ustar headers and padded data.
#[derive(Default)]
struct RawTar(Vec<u8>);

/// One raw entry's header fields.
struct Raw<'a> {
    name: &'a [u8],
    kind: u8,
    link: &'a [u8],
    data: &'a [u8],
    /// The size field, when it should lie about the data.
    size: Option<u64>,
    /// The mode field (default 0644).
    mode: Option<u32>,
}

impl<'a> Raw<'a> {
    fn file(name: &'a [u8], data: &'a [u8]) -> Self {
        Raw { name, kind: b'0', link: b"", data, size: None, mode: None }
    }
    fn link(name: &'a [u8], kind: u8, link: &'a [u8]) -> Self {
        Raw { name, kind, link, data: b"", size: None, mode: None }
    }
}

impl RawTar {
    fn entry(mut self, e: Raw) -> Self {
        let mut h = [0u8; 512];
        let name = &e.name[..e.name.len().min(100)];
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], e.mode.unwrap_or(0o644) as u64);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], e.size.unwrap_or(e.data.len() as u64));
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = e.kind;
        h[157..157 + e.link.len().min(100)].copy_from_slice(&e.link[..e.link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        octal(&mut h[148..155], sum as u64);
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(e.data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    /// A PAX extended header (`x`) carrying `records` for the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            len = rest + len.to_string().len();
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.entry(Raw { name: b"PaxHeaders/x", kind: b'x', link: b"", data: &body, size: None, mode: None })
    }

    /// A GNU long name (`L`) for the next entry.
    fn long_name(self, name: &[u8]) -> Self {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(Raw { name: b"././@LongLink", kind: b'L', link: b"", data: &data, size: None, mode: None })
    }

    /// Adds the config and a Dockerfile, then the end-of-archive blocks.
    fn finish(self) -> Vec<u8> {
        self.finish_with(br#"{"image":"127.0.0.1:1/hostile/x:1"}"#)
    }

    /// Adds only the config (the context brings its own Dockerfile).
    fn finish_with_config(self) -> Vec<u8> {
        let mut t = self.entry(Raw::file(b"com.openfaas.docker.config", br#"{"image":"127.0.0.1:1/hostile/x:1"}"#));
        t.0.extend_from_slice(&[0u8; 1024]);
        t.0
    }

    fn finish_with(self, config: &[u8]) -> Vec<u8> {
        let mut t = self.entry(Raw::file(b"context/Dockerfile", b"FROM scratch\n"));
        t = t.entry(Raw::file(b"com.openfaas.docker.config", config));
        t.0.extend_from_slice(&[0u8; 1024]);
        t.0
    }
}

/// An octal header field, or GNU base-256 when the value does not fit.
fn octal(field: &mut [u8], value: u64) {
    let s = format!("{value:0width$o}", width = field.len() - 1);
    if s.len() < field.len() {
        field[..s.len()].copy_from_slice(s.as_bytes());
    } else {
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
        field[0] = 0x80;
    }
}

fn entries(list: Vec<Raw>) -> RawTar {
    list.into_iter().fold(RawTar::default(), RawTar::entry)
}

/// A request with this Dockerfile (and a valid config).
fn dockerfile(text: &str) -> Vec<u8> {
    request_tar(&json!({"image": format!("{}/hostile/df:1", registry())}), &[("Dockerfile", text.as_bytes())])
}

/// One hostile request and what it must get.
struct Case {
    name: &'static str,
    body: Vec<u8>,
    /// Signature header; `None` signs the body with the right secret.
    signature: Option<String>,
    status: u16,
    want: &'static str,
}

fn case(name: &'static str, body: Vec<u8>, status: u16, want: &'static str) -> Case {
    Case { name, body, signature: None, status, want }
}

/// Requests that try to write `canary/pwned` from the context.
fn traversal_cases(canary: &Path) -> Vec<Case> {
    let c = canary.display().to_string();
    let up = format!("context/{}{}", "../".repeat(12), c.trim_start_matches('/'));
    let pwned = |p: &str| format!("{p}/pwned").into_bytes();
    let up_name = pwned(&up);
    let long_up = pwned(&format!("context/{}{}", "./".repeat(60), up.trim_start_matches("context/")));
    vec![
        case("dot-dot", entries(vec![Raw::file(&up_name, b"x")]).finish(), 400, "leaves the archive"),
        case("absolute", entries(vec![Raw::file(&pwned(&c), b"x")]).finish(), 400, "absolute path"),
        case(
            "dot-slash-dot-dot",
            entries(vec![Raw::file(&pwned(&format!("./{up}")), b"x")]).finish(),
            400,
            "leaves the archive",
        ),
        case(
            "double-slash",
            entries(vec![Raw::file(&pwned(&up.replace('/', "//")), b"x")]).finish(),
            400,
            "leaves the archive",
        ),
        case(
            "dot-dot-after-dir",
            entries(vec![Raw::file(&pwned(&up.replace("context/", "context/sub/../")), b"x")]).finish(),
            400,
            "leaves the archive",
        ),
        case(
            "pax-path",
            RawTar::default().pax(&[("path", &up_name)]).entry(Raw::file(b"context/innocent", b"x")).finish(),
            400,
            "leaves the archive",
        ),
        case(
            "gnu-long-name",
            RawTar::default().long_name(&long_up).entry(Raw::file(b"context/innocent", b"x")).finish(),
            400,
            "leaves the archive",
        ),
        case(
            "symlink-absolute",
            entries(vec![Raw::link(b"context/l", b'2', c.as_bytes()), Raw::file(b"context/l/pwned", b"x")]).finish(),
            400,
            "leaves the build context",
        ),
        case(
            "symlink-dot-dot",
            entries(vec![Raw::link(b"context/l", b'2', b"../../../../../../../../.."), Raw::file(b"context/x", b"")])
                .finish(),
            400,
            "leaves the build context",
        ),
        case(
            "symlink-then-write-through",
            entries(vec![Raw::link(b"context/l", b'2', b"sub"), Raw::file(b"context/l/pwned", b"x")]).finish(),
            400,
            "not a directory",
        ),
        case(
            "symlink-chain",
            entries(vec![Raw::link(b"context/a", b'2', b"b"), Raw::link(b"context/b", b'2', b"../../..")]).finish(),
            400,
            "leaves the build context",
        ),
        case(
            "symlink-pax-linkpath",
            RawTar::default().pax(&[("linkpath", c.as_bytes())]).entry(Raw::link(b"context/l", b'2', b"ok")).finish(),
            400,
            "leaves the build context",
        ),
        case(
            "hardlink-absolute",
            entries(vec![Raw::link(b"context/h", b'1', b"/etc/passwd")]).finish(),
            400,
            "hardlink",
        ),
        case(
            "hardlink-dot-dot",
            entries(vec![Raw::link(b"context/h", b'1', b"../../../../../../etc/passwd")]).finish(),
            400,
            "hardlink leaves the archive",
        ),
        case(
            "hardlink-outside-context",
            entries(vec![Raw::link(b"context/h", b'1', b"com.openfaas.docker.config")]).finish(),
            400,
            "leaves the build context",
        ),
        case(
            "hardlink-through-symlink",
            entries(vec![Raw::link(b"context/d", b'2', b"."), Raw::link(b"context/h", b'1', b"context/d/../../x")])
                .finish(),
            400,
            "hardlink",
        ),
        case(
            "hardlink-missing",
            entries(vec![Raw::link(b"context/h", b'1', b"context/nope")]).finish(),
            400,
            "not found",
        ),
    ]
}

/// Links that each stay inside but lead out as a chain: `a/u0 -> ..`,
/// `a/uN -> u(N-1)/..`; `a/u3` is the server's data dir (context, build
/// workspace, `builds/`, data dir), `a/u11` the host's root.
fn chain_cases(canary: &Path) -> Vec<Case> {
    let names: Vec<(String, String)> = std::iter::once(("context/a/u0".to_string(), "..".to_string()))
        .chain((1..12).map(|n| (format!("context/a/u{n}"), format!("u{}/..", n - 1))))
        .collect();
    let chain = || names.iter().map(|(l, t)| Raw::link(l.as_bytes(), b'2', t.as_bytes())).collect::<Vec<_>>();
    let host_file = format!("a/u11{}/secret", canary.display());
    let with = |extra: Vec<Raw>| entries(chain().into_iter().chain(extra).collect());
    vec![
        case(
            "chain-dockerfile-to-host",
            with(vec![Raw::link(b"context/Dockerfile", b'2', host_file.as_bytes())]).finish_with_config(),
            400,
            "context/Dockerfile: symlink to",
        ),
        case(
            "chain-dockerignore-to-host",
            with(vec![Raw::link(b"context/.dockerignore", b'2', host_file.as_bytes())]).finish(),
            400,
            "leads outside the build context",
        ),
        // A directory entry over the link that reaches the data dir: its
        // mode must not be applied through the link.
        case(
            "dir-entry-over-chain",
            with(vec![Raw { mode: Some(0o777), ..Raw::link(b"context/a/u3", b'5', b"") }]).finish(),
            400,
            "context/a/u3",
        ),
    ]
}

/// Device files, sizes and shapes the intake refuses.
fn entry_cases() -> Vec<Case> {
    let deep = format!("context/{}f", "d/".repeat(3000)).into_bytes();
    let long_component = format!("context/{}", "n".repeat(300)).into_bytes();
    let many: Vec<String> = (0..20_001).map(|i| format!("context/f{i}")).collect();
    let many_tar = many.iter().fold(RawTar::default(), |t, n| t.entry(Raw::file(n.as_bytes(), b"")));
    vec![
        case("char-device", entries(vec![Raw::link(b"context/dev", b'3', b"")]).finish(), 400, "not allowed"),
        case("block-device", entries(vec![Raw::link(b"context/blk", b'4', b"")]).finish(), 400, "not allowed"),
        case("fifo", entries(vec![Raw::link(b"context/fifo", b'6', b"")]).finish(), 400, "not allowed"),
        case(
            "size-field-lies",
            entries(vec![Raw { size: Some(1 << 40), ..Raw::file(b"context/huge", b"x") }]).finish(),
            400,
            "unpacks to more than",
        ),
        case("20001-files", many_tar.finish(), 400, "more than 20000 entries"),
        case("deep-nesting", RawTar::default().long_name(&deep).entry(Raw::file(b"x", b"")).finish(), 400, "too long"),
        case(
            "long-component",
            RawTar::default().long_name(&long_component).entry(Raw::file(b"x", b"")).finish(),
            400,
            "too long",
        ),
        case(
            "giant-pax-header",
            RawTar::default().pax(&[("comment", &vec![b'a'; 4 << 20])]).entry(Raw::file(b"context/a", b"")).finish(),
            400,
            "header",
        ),
        case("non-utf8-name", entries(vec![Raw::file(b"context/caf\xe9\xff", b"x")]).finish(), 400, "UTF-8"),
        case("not-a-tar", b"\x89PNG\r\n\x1a\n".repeat(200), 400, "not a tar archive"),
        case("gzip-body", gzip(&request_tar(&json!({"image": "a/b:c"}), &[])), 400, "gzip"),
        case("empty-body", Vec::new(), 400, "missing com.openfaas.docker.config"),
        case("truncated-tar", dockerfile("FROM scratch\n")[..700].to_vec(), 400, "tar"),
    ]
}

/// Config entries that are too big, malformed or out of range.
fn config_cases() -> Vec<Case> {
    let big = format!(r#"{{"image":"a/b:c","buildArgs":{{"A":"{}"}}}}"#, "x".repeat(2 << 20));
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let platforms: Vec<String> = (0..64).map(|i| format!("linux/arch{i}")).collect();
    let many_platforms = serde_json::to_vec(&json!({"image": "a/b:c", "platforms": platforms})).unwrap();
    let long_image = serde_json::to_vec(&json!({"image": format!("a/{}:c", "x".repeat(5000))})).unwrap();
    vec![
        case("config-oversized", RawTar::default().finish_with(big.as_bytes()), 400, "larger than"),
        case("config-not-json", RawTar::default().finish_with(b"image: a/b"), 400, "invalid JSON"),
        case("config-deeply-nested", RawTar::default().finish_with(nested.as_bytes()), 400, "invalid JSON"),
        case("config-wrong-type", RawTar::default().finish_with(br#"{"image":5}"#), 400, "invalid JSON"),
        case("config-many-platforms", RawTar::default().finish_with(&many_platforms), 400, "platforms"),
        case("config-long-image", RawTar::default().finish_with(&long_image), 400, "invalid image reference"),
    ]
}

/// Dockerfiles that try to exhaust the parser or the expansion.
fn dockerfile_cases() -> Vec<Case> {
    let doubling: String = (0..40).map(|_| "ENV A=$A$A$A$A\n").collect();
    let bomb = format!("FROM scratch\nENV A=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n{doubling}");
    let nested = format!("FROM scratch\nENV A={}x{}\n", "${B:-".repeat(50_000), "}".repeat(50_000));
    let giant = format!("FROM scratch\nLABEL a=\"{}\"\n", "x".repeat(3 << 20));
    let continued = format!("FROM scratch\nRUN true{}\n", " x \\\n".repeat(400_000));
    vec![
        case("expansion-bomb", dockerfile(&bomb), 400, "longer than"),
        case("nested-expansion", dockerfile(&nested), 400, "nested"),
        case("giant-line", dockerfile(&giant), 400, "longer than"),
        case("endless-continuation", dockerfile(&continued), 400, "longer than"),
        case(
            "not-utf8-dockerfile",
            request_tar(&json!({"image": "a/b:c"}), &[("Dockerfile", b"FROM \xff\n")]),
            400,
            "UTF-8",
        ),
        case("nul-in-dockerfile", dockerfile("FROM scratch\nRUN a\0b\n"), 400, "NUL"),
        case("unterminated-heredoc", dockerfile("FROM scratch\nRUN <<EOF\necho\n"), 400, "heredoc"),
        case("unterminated-quote", dockerfile("FROM scratch\nENV A=\"x\n"), 400, "Dockerfile:2"),
        case("no-from", dockerfile("RUN true\n"), 400, "FROM"),
        case(
            "copy-dot-dot",
            dockerfile("FROM scratch\nCOPY ../../../../etc/passwd /p\n"),
            400,
            "leaves the build context",
        ),
    ]
}

/// Signatures that must not pass: replayed onto a changed body, malformed.
fn signature_cases() -> Vec<Case> {
    let body = dockerfile("FROM scratch\n");
    let replayed = sign(SECRET, &body);
    let mut modified = body.clone();
    modified.extend_from_slice(&[0u8; 512]);
    let signed = |name, sig: String, want| Case { name, body: body.clone(), signature: Some(sig), status: 401, want };
    vec![
        Case {
            name: "replayed-signature",
            body: modified,
            signature: Some(replayed.clone()),
            status: 401,
            want: "invalid",
        },
        signed("truncated-signature", replayed[..40].to_string(), "malformed"),
        signed("non-hex-signature", format!("sha256={}", "zz".repeat(32)), "malformed"),
        signed("giant-signature", format!("sha256={}", "ab".repeat(4000)), "invalid"),
        signed("empty-signature", String::new(), "X-Build-Signature"),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Every path under `dir`.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(tree(&e.path()));
        }
    }
    out
}

#[test]
fn hostile_requests_get_clear_4xx_and_write_nothing_outside() {
    let server = Server::start(ServerOptions::default());
    let canary = tempfile::Builder::new().prefix("kiln-canary-").tempdir_in("/tmp").unwrap();
    let cases: Vec<Case> = [
        traversal_cases(canary.path()),
        chain_cases(canary.path()),
        entry_cases(),
        config_cases(),
        dockerfile_cases(),
        signature_cases(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(cases.len() >= 50, "the corpus has {} cases", cases.len());
    let data_dir_mode = || std::fs::metadata(&server.data_dir).unwrap().permissions().mode() & 0o7777;
    let data_dir_mode_before = data_dir_mode();
    let mut failures = Vec::new();
    for c in &cases {
        let started = std::time::Instant::now();
        let sig = c.signature.clone().unwrap_or_else(|| sign(SECRET, &c.body));
        let (status, reply) = server.post(&c.body, Some(&sig).filter(|s| !s.is_empty()).map(String::as_str));
        let message = format!("{} {}", reply["error"].as_str().unwrap_or_default(), log_text(&reply));
        eprintln!("{}: {status} in {:.2}s: {}", c.name, started.elapsed().as_secs_f64(), truncated(&message));
        if status != c.status || !message.contains(c.want) {
            failures.push(format!(
                "{}: want {} ~ {:?}, got {status}: {}",
                c.name,
                c.status,
                c.want,
                truncated(&message)
            ));
        }
        assert!(tree(canary.path()).is_empty(), "{}: wrote into the canary: {:?}", c.name, tree(canary.path()));
        assert_eq!(server.health(), 200, "{}: the server is unhealthy afterwards", c.name);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let builds = tree(&server.data_dir.join("builds"));
    assert!(builds.is_empty(), "request workspaces are removed: {builds:?}");
    assert_eq!(data_dir_mode(), data_dir_mode_before, "no entry changed the data dir through a link");
    let ok = request_tar(
        &json!({"image": test_image("kiln/after-hostile")}),
        &[("Dockerfile", b"FROM scratch\nLABEL ok=1\n")],
    );
    let (status, reply) = server.build(&ok);
    assert_success(status, &reply);
}

fn truncated(s: &str) -> String {
    s.chars().take(300).collect()
}

#[test]
fn decompression_bombs_and_pathological_patterns_are_bounded() {
    let opts = ServerOptions { args: vec!["--max-unpacked-mb".into(), "16".into()], ..Default::default() };
    let server = Server::start(opts);
    let work = tempfile::tempdir().unwrap();
    sh(work.path(), "truncate -s 64M zeros && tar cf - zeros | gzip -1 > bomb.tar.gz");
    let bomb = std::fs::read(work.path().join("bomb.tar.gz")).unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is small: {} bytes", bomb.len());
    let image = test_image("kiln/hostile-bomb");
    let files: [(&str, &[u8]); 2] = [("Dockerfile", b"FROM scratch\nADD bomb.tar.gz /\n"), ("bomb.tar.gz", &bomb)];
    let (status, reply) = server.build(&request_tar(&json!({"image": image}), &files));
    let error = reply["error"].as_str().unwrap_or_default();
    assert_eq!(status, 400, "{reply}");
    assert!(error.contains("line 2") && error.contains("unpacks to more than 16777216 bytes"), "{error}");
    assert_eq!(active_snapshots(&server.data_dir), 0, "the half-extracted layer is discarded");

    let deep = format!("{}/f", vec!["a"; 60].join("/"));
    let ignore = format!("{}b\n", "**/a/".repeat(30));
    // Backtracking matchers take exponential time on both patterns.
    let copy_glob = format!("FROM scratch\nCOPY {}b /out/\n", "*a".repeat(60));
    let files: [(&str, &[u8]); 3] =
        [("Dockerfile", copy_glob.as_bytes()), (".dockerignore", ignore.as_bytes()), (&deep, b"x")];
    let (name, near_miss) = (format!("{}b", "a".repeat(80)), "a".repeat(80));
    let mut files = files.to_vec();
    files.extend([(name.as_str(), &b"y"[..]), (near_miss.as_str(), &b"z"[..])]);
    let (status, reply) = server.build(&request_tar(&json!({"image": test_image("kiln/hostile-glob")}), &files));
    assert_success(status, &reply);
    assert_eq!(server.health(), 200);
    let out: Vec<String> = tree(&unpack_image(&test_image_of(&reply), None).rootfs.join("out"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(out, [name], "only the matching file is copied");
}

fn test_image_of(reply: &serde_json::Value) -> String {
    reply["image"].as_str().unwrap().to_string()
}
