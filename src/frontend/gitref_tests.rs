//! Ports of BuildKit's `TestParseGitRef`, `TestFragmentFormat` and
//! `TestFragmentFormatWithSubdir` (dfgitutil/git_ref_test.go).

use super::*;

fn git(remote: &str, short: &str) -> GitRef {
    GitRef { remote: remote.into(), short_name: short.into(), ..Default::default() }
}

fn with(mut g: GitRef, f: impl FnOnce(&mut GitRef)) -> GitRef {
    f(&mut g);
    g
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn git_refs_parse_like_buildkit() {
    let bk = "https://github.com/moby/buildkit.git";
    let not_git = [
        "https://example.com/",
        "https://example.com/foo",
        "https://example.com/foo.git/",
        "https://example.com/foo.git.bar",
        "custom.xyz/moby/buildkit.git",
        "https://github.com/moby/buildkit",
        "http://github.com/docker/docker.git:#branch",
        "./.git",
        ".git",
    ];
    for src in not_git {
        assert_eq!(parse_git_ref(src), Ok(None), "{src}");
    }
    let cases: Vec<(&str, GitRef)> = vec![
        ("https://example.com/foo.git", git("https://example.com/foo.git", "foo")),
        (
            "https://example.com/foo.git#deadbeef",
            with(git("https://example.com/foo.git", "foo"), |g| g.reference = some("deadbeef")),
        ),
        (
            "https://example.com/foo.git#release/1.2",
            with(git("https://example.com/foo.git", "foo"), |g| g.reference = some("release/1.2")),
        ),
        ("git://example.com/foo", with(git("git://example.com/foo", "foo"), |g| g.unencrypted = true)),
        (
            "github.com/moby/buildkit",
            with(git("github.com/moby/buildkit", "buildkit"), |g| g.indistinguishable_from_local = true),
        ),
        (
            "github.com/moby/buildkit#master",
            with(git("github.com/moby/buildkit", "buildkit"), |g| {
                g.indistinguishable_from_local = true;
                g.reference = some("master");
            }),
        ),
        (bk, git(bk, "buildkit")),
        (
            "https://foo:bar@github.com/moby/buildkit.git",
            git("https://foo:bar@github.com/moby/buildkit.git", "buildkit"),
        ),
        ("git@github.com:moby/buildkit", git("git@github.com:moby/buildkit", "buildkit")),
        ("git@github.com:moby/buildkit.git", git("git@github.com:moby/buildkit.git", "buildkit")),
        (
            "git@bitbucket.org:atlassianlabs/atlassian-docker.git",
            git("git@bitbucket.org:atlassianlabs/atlassian-docker.git", "atlassian-docker"),
        ),
        (
            "https://github.com/foo/bar.git#baz/qux:quux/quuz",
            with(git("https://github.com/foo/bar.git", "bar"), |g| {
                g.reference = some("baz/qux");
                g.subdir = some("quux/quuz");
            }),
        ),
        (
            "https://github.com/docker/docker.git#:myfolder",
            with(git("https://github.com/docker/docker.git", "docker"), |g| g.subdir = some("myfolder")),
        ),
        (
            "https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir",
            with(git("https://github.com/docker/docker.git", "docker"), |g| {
                g.reference = some("v1.0.0");
                g.subdir = some("/subdir");
            }),
        ),
        (
            "https://github.com/moby/buildkit.git?subdir=/subdir#v1.0.0",
            with(git(bk, "buildkit"), |g| {
                g.reference = some("v1.0.0");
                g.subdir = some("/subdir");
            }),
        ),
        (
            "https://github.com/moby/buildkit.git?tag=v1.0.0",
            with(git(bk, "buildkit"), |g| g.reference = some("refs/tags/v1.0.0")),
        ),
        (
            "github.com/moby/buildkit?tag=v1.0.0",
            with(git("github.com/moby/buildkit", "buildkit"), |g| {
                g.reference = some("refs/tags/v1.0.0");
                g.indistinguishable_from_local = true;
            }),
        ),
        (
            "https://github.com/moby/buildkit.git?branch=v1.0",
            with(git(bk, "buildkit"), |g| g.reference = some("refs/heads/v1.0")),
        ),
        (
            "git@github.com:moby/buildkit.git?subdir=/subdir#v1.0.0",
            with(git("git@github.com:moby/buildkit.git", "buildkit"), |g| {
                g.reference = some("v1.0.0");
                g.subdir = some("/subdir");
            }),
        ),
        ("https://github.com/moby/buildkit.git?mtime=commit", with(git(bk, "buildkit"), |g| g.mtime = some("commit"))),
        (
            "https://github.com/moby/buildkit.git?mtime=checkout",
            with(git(bk, "buildkit"), |g| g.mtime = some("checkout")),
        ),
        (
            "https://github.com/moby/buildkit.git?fetch-by-commit=true&checksum=deadbeef#refs/heads/branch",
            with(git(bk, "buildkit"), |g| {
                g.reference = some("refs/heads/branch");
                g.checksum = some("deadbeef");
                g.fetch_by_commit = true;
            }),
        ),
        (
            "https://github.com/moby/buildkit.git?fetch-by-commit&checksum=deadbeef",
            with(git(bk, "buildkit"), |g| {
                g.checksum = some("deadbeef");
                g.fetch_by_commit = true;
            }),
        ),
        ("https://github.com/moby/buildkit.git?fetch-by-commit=false", git(bk, "buildkit")),
    ];
    for (src, want) in cases {
        assert_eq!(parse_git_ref(src), Ok(Some(want)), "{src}");
    }
    let errors = [
        ("https://github.com/moby/buildkit.git?ref=v1.0.0#v1.2.3", "ref conflicts"),
        ("https://github.com/moby/buildkit.git?ref=v1.0.0&tag=v1.2.3", "ref conflicts"),
        ("https://github.com/moby/buildkit.git?tag=v1.0.0&branch=v1.0", "branch conflicts with tag"),
        ("https://github.com/moby/buildkit.git?mtime=invalid", "invalid mtime value"),
        ("https://github.com/moby/buildkit.git?fetch-by-commit=invalid", "invalid fetch-by-commit value"),
        ("https://github.com/moby/buildkit.git?invalid=123", "unexpected query \"invalid\""),
    ];
    for (src, want) in errors {
        let err = parse_git_ref(src).unwrap_err().to_string();
        assert!(err.contains(want), "{src}: {err}");
    }
}

#[test]
fn fragment_format_like_buildkit() {
    let bk = "https://github.com/moby/buildkit.git";
    let cases = [
        ("https://example.com/", "https://example.com/", false),
        ("https://example.com/foo.git", "https://example.com/foo.git", true),
        ("https://example.com/foo.git#deadbeef", "https://example.com/foo.git#deadbeef", true),
        ("https://example.com/foo.git/", "https://example.com/foo.git/", false),
        ("git://example.com/foo", "git://example.com/foo", true),
        ("github.com/moby/buildkit#master", "github.com/moby/buildkit#master", true),
        ("custom.xyz/moby/buildkit.git", "custom.xyz/moby/buildkit.git", false),
        ("git@github.com:moby/buildkit", "git@github.com:moby/buildkit", true),
        ("https://github.com/foo/bar.git#baz/qux:quux/quuz", "https://github.com/foo/bar.git#baz/qux", true),
        ("http://github.com/docker/docker.git:#branch", "http://github.com/docker/docker.git:#branch", false),
        ("https://github.com/docker/docker.git#:myfolder", "https://github.com/docker/docker.git", true),
        ("./.git", "./.git", false),
        (
            "https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir",
            "https://github.com/docker/docker.git#v1.0.0",
            true,
        ),
        (
            "https://github.com/moby/buildkit.git?subdir=/subdir#v1.0.0",
            "https://github.com/moby/buildkit.git#v1.0.0",
            true,
        ),
        (
            "https://github.com/moby/buildkit.git?tag=v1.0.0",
            "https://github.com/moby/buildkit.git#refs/tags/v1.0.0",
            true,
        ),
        ("github.com/moby/buildkit?tag=v1.0.0", "github.com/moby/buildkit#refs/tags/v1.0.0", true),
        (
            "https://github.com/moby/buildkit.git?branch=v1.0",
            "https://github.com/moby/buildkit.git#refs/heads/v1.0",
            true,
        ),
        (
            "https://github.com/moby/buildkit.git?ref=v1.0.0#v1.2.3",
            "https://github.com/moby/buildkit.git?ref=v1.0.0#v1.2.3",
            false,
        ),
        ("git@github.com:moby/buildkit.git?subdir=/subdir#v1.0.0", "git@github.com:moby/buildkit.git#v1.0.0", true),
        ("https://github.com/moby/buildkit.git?invalid=123", "https://github.com/moby/buildkit.git?invalid=123", false),
        (bk, bk, true),
    ];
    for (src, want, ok) in cases {
        assert_eq!(fragment_format(src, false), (want.to_string(), ok), "{src}");
    }
    let with_subdir = [
        ("https://github.com/foo/bar.git#baz/qux:quux/quuz", "https://github.com/foo/bar.git#baz/qux:quux/quuz"),
        ("https://github.com/docker/docker.git#:myfolder", "https://github.com/docker/docker.git#:myfolder"),
        (
            "https://github.com/docker/docker.git?ref=v1.0.0&subdir=/subdir",
            "https://github.com/docker/docker.git#v1.0.0:subdir",
        ),
        (
            "https://github.com/moby/buildkit.git?subdir=/subdir#v1.0.0",
            "https://github.com/moby/buildkit.git#v1.0.0:subdir",
        ),
        ("git@github.com:moby/buildkit.git?subdir=/subdir#v1.0.0", "git@github.com:moby/buildkit.git#v1.0.0:subdir"),
        (bk, bk),
    ];
    for (src, want) in with_subdir {
        assert_eq!(fragment_format(src, true), (want.to_string(), true), "{src}");
    }
}
