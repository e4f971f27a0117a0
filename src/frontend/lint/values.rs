//! Rules on literal instruction values: FromPlatformFlagConstDisallowed
//! (a constant `FROM --platform` the stage name does not explain) and, from
//! Dockerfile 1.19, ExposeProtoCasing and ExposeInvalidFormat. Values with
//! variables are left alone (BuildKit judges them after expansion).

use super::{warn, Warning};
use crate::frontend::instructions::{Instruction, Kind};
use crate::frontend::version::{FrontendVersion, EXPOSE_LIST_HISTORY};
use crate::platform::Platform;

/// FromPlatformFlagConstDisallowed for one FROM.
pub fn const_platform(i: &Instruction, out: &mut Vec<Warning>) {
    let Kind::From { platform: Some(value), alias, .. } = &i.kind else { return };
    if value.contains('$') {
        return;
    }
    let Ok(p) = Platform::parse(value) else { return };
    let name = alias.as_deref().unwrap_or("");
    if name.contains(p.os.as_str()) || name.contains(p.architecture.as_str()) {
        return;
    }
    let msg = format!("FROM --platform flag should not use constant value {value:?}");
    warn(out, "FromPlatformFlagConstDisallowed", i.line, msg);
}

/// ExposeProtoCasing and ExposeInvalidFormat for one EXPOSE (the rules
/// arrived with Dockerfile 1.19).
pub fn expose(i: &Instruction, version: FrontendVersion, out: &mut Vec<Warning>) {
    let Kind::Expose(args) = &i.kind else { return };
    if version < EXPOSE_LIST_HISTORY {
        return;
    }
    for raw in args.split_whitespace().filter(|w| !w.contains('$')) {
        let (ports, proto) = raw.split_once('/').unwrap_or((raw, ""));
        if proto != proto.to_ascii_lowercase() {
            let msg = format!("Defined protocol '{raw}' in EXPOSE instruction should be lowercase");
            warn(out, "ExposeProtoCasing", i.line, msg);
        }
        if ports.contains(':') {
            let msg = format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{raw}'");
            warn(out, "ExposeInvalidFormat", i.line, msg);
        }
    }
}
