//! Ports of BuildKit's check-option tests (`dockerfile_check_test.go`):
//! `# check=skip=…;error=true` and the `BUILDKIT_DOCKERFILE_CHECK` build
//! arg (which wins) decide which warnings a build logs and whether they
//! fail it; the checks of the lines before a bad one are still reported.

mod support;

use serde_json::{json, Value};
use support::*;

const BODY: &str = "FROM scratch as base\ncopy Dockerfile .\n";

fn build(server: &Server, dockerfile: &str, check_arg: Option<&str>) -> (u16, Value) {
    let mut config = json!({ "image": test_image("kiln/bk-checks") });
    if let Some(arg) = check_arg {
        config["buildArgs"] = json!({ "BUILDKIT_DOCKERFILE_CHECK": arg });
    }
    server.build(&request_tar(&config, &[("Dockerfile", dockerfile.as_bytes())]))
}

/// The rules named by the log's warnings, in order.
fn warned(reply: &Value) -> Vec<String> {
    let log = log_text(reply);
    log.lines()
        .filter_map(|l| l.split_once("WARNING: ").map(|(_, w)| w))
        .map(|w| w.split(':').next().unwrap().to_string())
        .collect()
}

#[test]
fn check_options_skip_rules_and_turn_warnings_into_errors() {
    let server = Server::start(ServerOptions::default());
    let quiet = [
        ("#check=skip=all", None),
        ("#check=skip=all;error=true", None),
        ("#check=skip=ConsistentInstructionCasing,FromAsCasing", None),
        ("#check=skip=ConsistentInstructionCasing,FromAsCasing;error=true", None),
        ("#check=error=true", Some("skip=all")),
    ];
    for (directive, arg) in quiet {
        let (status, reply) = build(&server, &format!("{directive}\n{BODY}"), arg);
        assert_success(status, &reply);
        assert_eq!(warned(&reply), Vec::<String>::new(), "{directive} {arg:?}");
    }

    let (status, reply) = build(&server, &format!("#check=skip=ConsistentInstructionCasing\n{BODY}"), None);
    assert_success(status, &reply);
    assert_eq!(warned(&reply), ["FromAsCasing"]);
    assert!(log_text(&reply).contains("'as' and 'FROM' keywords' casing do not match (line 2)"), "{reply}");

    let failing = [
        ("#check=skip=ConsistentInstructionCasing;error=true", None),
        ("#check=skip=all", Some("skip=ConsistentInstructionCasing;error=true")),
    ];
    for (directive, arg) in failing {
        let (status, reply) = build(&server, &format!("{directive}\n{BODY}"), arg);
        assert_eq!(status, 400, "{directive} {arg:?}: {reply}");
        let err = reply["error"].as_str().unwrap();
        assert!(err.starts_with("lint violation found for rules: FromAsCasing "), "{err}");
        assert!(err.contains("(line 2)") && !err.contains("ConsistentInstructionCasing"), "{err}");
    }
}

#[test]
fn warnings_before_a_bad_line_are_still_reported() {
    // testWarningsBeforeError.
    let server = Server::start(ServerOptions::default());
    let dockerfile = "\nFROM scratch AS BadStageName\nMAINTAINER me@example.org\nBADCMD\n";
    let (status, reply) = build(&server, dockerfile, None);
    assert_eq!(status, 400, "{reply}");
    assert_eq!(warned(&reply), ["StageNameCasing", "MaintainerDeprecated"]);
    let err = reply["error"].as_str().unwrap();
    assert!(err.starts_with("Dockerfile:4:1: unknown instruction: BADCMD"), "{err}");
}
