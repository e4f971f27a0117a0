//! Ports of BuildKit's lint tests (`dockerfile_check_test.go`): each case
//! is a Dockerfile and the rules it must raise, with their lines, for a
//! build of its last stage with no check options.

use super::{lint, CheckConfig};

fn found(text: &str) -> Vec<(&'static str, usize)> {
    let df = crate::frontend::parse(text).unwrap();
    let mut got: Vec<_> = lint(&df, &CheckConfig::default(), None).into_iter().map(|w| (w.rule, w.line)).collect();
    got.sort();
    got
}

fn check(cases: &[(&str, &[(&'static str, usize)])]) {
    for (text, want) in cases {
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(found(text), want, "{text}");
    }
}

#[test]
fn stage_names_casing_and_reserved_words() {
    check(&[
        (
            "\nFROM scratch AS BadStageName\n\nFROM scratch as base2\n\nFROM scratch AS base3\n",
            &[("StageNameCasing", 2), ("FromAsCasing", 4)],
        ),
        ("\nfrom scratch AS base\n\nfrom scratch as base2\n", &[("FromAsCasing", 2)]),
        ("\nFROM scratch AS scratch\nFROM scratch AS context\n", &[("ReservedStageName", 2), ("ReservedStageName", 3)]),
        ("\nFROM scratch\nFROM scratch AS a\n", &[]),
        ("\nFROM scratch AS b\nFROM scratch AS b\n", &[("DuplicateStageName", 3)]),
        ("\nFROM scratch AS b1\nFROM scratch AS b2\n", &[]),
    ]);
}

#[test]
fn instruction_casing_follows_the_majority() {
    check(&[
        ("\nFrom scratch as base\nFROM scratch AS base2\n", &[("ConsistentInstructionCasing", 2)]),
        ("\nFROM scratch\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n", &[("ConsistentInstructionCasing", 3)]),
        ("\nfrom scratch\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n", &[("ConsistentInstructionCasing", 3)]),
        (
            "\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n",
            &[("ConsistentInstructionCasing", 2)],
        ),
        (
            "\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n",
            &[("ConsistentInstructionCasing", 2)],
        ),
        ("\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n", &[]),
    ]);
}

#[test]
fn stage_rules_apply_to_the_stages_built() {
    check(&[
        ("\nFROM scratch\nCMD mycommand\n", &[("JSONArgsRecommended", 3)]),
        ("\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nENTRYPOINT mycommand\n", &[]),
        (
            "\nFROM scratch\nENV testkey value\nLABEL key value\n",
            &[("LegacyKeyValueFormat", 3), ("LegacyKeyValueFormat", 4)],
        ),
        ("\nFROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n", &[]),
        ("\nFROM scratch\nWORKDIR app/\n", &[("WorkdirRelativePath", 3)]),
        ("\nFROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n", &[]),
        ("\nFROM scratch\nMAINTAINER me@example.org\n", &[("MaintainerDeprecated", 3)]),
        (
            "\nFROM scratch\nENTRYPOINT [\"/a\"]\nENTRYPOINT [\"/b\"]\nCMD [\"/a\"]\nCMD [\"/b\"]\nHEALTHCHECK CMD [\"/a\"]\nHEALTHCHECK CMD [\"/b\"]\n",
            &[("MultipleInstructionsDisallowed", 3), ("MultipleInstructionsDisallowed", 5), ("MultipleInstructionsDisallowed", 7)],
        ),
    ]);
}

/// A `# check=skip=` comment right above an instruction skips the rule for it.
#[test]
fn check_comments_above_an_instruction_skip_its_rules() {
    check(&[
        ("\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n", &[]),
        ("\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\n", &[]),
        ("\nFROM scratch\n# check=skip=LegacyKeyValueFormat\nENV testkey value\n# check=skip=LegacyKeyValueFormat\nLABEL key value\n", &[]),
        ("\nFROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n", &[]),
        ("\n# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n", &[]),
        ("\nFROM scratch\n# check=skip=WorkdirRelativePath\n#\nWORKDIR app/\n", &[("WorkdirRelativePath", 5)]),
    ]);
}

#[test]
fn from_arguments_and_platforms() {
    check(&[
        ("\nFROM --platform=$TARGETPLATFORM scratch\n", &[("RedundantTargetPlatform", 2)]),
        ("\nFROM --platform=${TARGETPLATFORM} scratch\n", &[("RedundantTargetPlatform", 2)]),
        ("\nFROM --platform=linux/amd64 scratch\n", &[("FromPlatformFlagConstDisallowed", 2)]),
        ("\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n", &[]),
        ("\nFROM --platform=linux/amd64 scratch AS linux\n", &[]),
        ("\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n", &[]),
        ("\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n", &[]),
        ("\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n", &[]),
        ("\nARG DEBUG=\"\"\nFROM scratch${DEBUG-@bogus}\nCOPY Dockerfile .\n", &[]),
        ("\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n", &[("UndefinedArgInFrom", 2)]),
        ("\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\n", &[("UndefinedArgInFrom", 3)]),
        ("\nARG IMAGE\nFROM $IMAGE\n", &[("InvalidDefaultArgInFrom", 3)]),
    ]);
    let df = crate::frontend::parse("FROM --platform=$BULIDPLATFORM scratch\n").unwrap();
    let warning = &lint(&df, &CheckConfig::default(), None)[0];
    assert_eq!(warning.message, "FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)");
}

#[test]
fn continuation_and_expose_rules() {
    check(&[
        ("\nFROM scratch\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n", &[("NoEmptyContinuation", 5)]),
        (
            "# syntax=docker/dockerfile:1\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n",
            &[("ExposeProtoCasing", 3), ("ExposeProtoCasing", 3)],
        ),
        (
            "# syntax=docker/dockerfile:1\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n",
            &[("ExposeInvalidFormat", 3), ("ExposeInvalidFormat", 3), ("ExposeInvalidFormat", 3)],
        ),
        ("FROM scratch\nEXPOSE 80/TCP\n", &[]),
    ]);
}

/// testSecretsUsedInArgOrEnv: credential-like names (by word, so
/// `PUBLIC_KEY`, `public_token`, `*_FILE` and `AUTH_MODULE_VERSION` are
/// not), skipped by a `# check=` comment above the instruction only.
#[test]
fn secret_like_names_in_arg_and_env() {
    let text = "# check=skip=InvalidDefinitionDescription\n\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\n\
                ENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\n\
                ENV git_key=\nENV PUBLIC_KEY=\nARG public_token\nARG SECRET_PASSPHRASE_FILE\nENV password_file=bar secret_File=baz\n\
                ARG AUTH_MODULE_VERSION\n# check=skip=SecretsUsedInArgOrEnv // allow secret in environment\nENV password=bar\n\
                # check=skip=SecretsUsedInArgOrEnv // allow secret in arg\nARG password\n\
                # check=skip=all // is local to only this instruction\nENV alternate_password=bar\n\
                # check=skip=all // is local to only this instruction\nARG alternate_password\n";
    let df = crate::frontend::parse(text).unwrap();
    let found: Vec<(usize, String)> = lint(&df, &CheckConfig::default(), None)
        .into_iter()
        .filter(|w| w.rule == "SecretsUsedInArgOrEnv")
        .map(|w| (w.line, w.message))
        .collect();
    let names: Vec<(usize, &str)> =
        found.iter().map(|(l, m)| (*l, m.rsplit_once('(').map_or("", |(_, n)| n.trim_end_matches(')')))).collect();
    let want = [
        (4, "ARG \"SECRET_PASSPHRASE\""),
        (5, "ENV \"SUPER_Secret\""),
        (6, "ENV \"password\""),
        (6, "ENV \"secret\""),
        (7, "ARG \"super_duper_secret_token\""),
        (7, "ARG \"auth\""),
        (8, "ENV \"apikey\""),
        (9, "ENV \"git_key\""),
    ];
    assert_eq!(names, want);
    assert_eq!(found[0].1, "Do not use ARG or ENV instructions for sensitive data (ARG \"SECRET_PASSPHRASE\")");
}
