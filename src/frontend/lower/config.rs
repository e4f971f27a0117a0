//! Metadata-only instructions: they change the image config and add an
//! `empty_layer` history entry, never a layer.

use super::{Ctx, StageState};
use crate::frontend::diag::Diagnostic;
use crate::frontend::instructions::{CommandForm, Instruction, Kind};
use crate::frontend::words::process_words;
use crate::graph::{HealthConfig, ImageConfig};
use serde_json::json;

/// The shell for shell-form commands.
pub fn shell(config: &ImageConfig) -> Vec<String> {
    config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

fn command(form: &CommandForm, config: &ImageConfig) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => shell(config).into_iter().chain([s.clone()]).collect(),
    }
}

/// Applies one metadata instruction. Words are expanded against the state
/// as it was before the instruction, then the state changes in place.
pub fn apply(st: &mut StageState, instr: &Instruction, ctx: &Ctx) -> Result<(), Diagnostic> {
    let err = |msg: String| Diagnostic::new(instr.line, 1, msg, &instr.first);
    let word = |w: &str, st: &StageState| ctx.expand(w, st, instr);
    let words = |text: &str, st: &StageState| {
        let out = process_words(text, &|n: &str| st.lookup(n), ctx.escape).map_err(|e| err(e.to_string()))?;
        ctx.budget.charge_all(&out).map_err(|e| err(e.to_string()))?;
        Ok::<_, Diagnostic>(out)
    };
    let created_by = match &instr.kind {
        Kind::Env(pairs) | Kind::Label(pairs) => {
            let expanded =
                pairs.iter().map(|(k, v)| Ok((word(k, st)?, word(v, st)?))).collect::<Result<Vec<_>, Diagnostic>>()?;
            let is_env = matches!(instr.kind, Kind::Env(_));
            for (k, v) in &expanded {
                if is_env {
                    st.set_env(k, v);
                } else {
                    st.config.config.labels.get_or_insert_with(Default::default).insert(k.clone(), v.clone());
                }
            }
            let kw = if is_env { "ENV" } else { "LABEL" };
            let body: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{kw} {}", body.join(" "))
        }
        Kind::User(u) => {
            let u = word(u, st)?;
            st.config.config.user = Some(u.clone());
            format!("USER {u}")
        }
        Kind::Cmd(form) => {
            let c = command(form, &st.config);
            ctx.budget.charge_all(&c).map_err(|e| err(e.to_string()))?;
            let created_by = format!("CMD {}", crate::gofmt::quote_list(&c));
            st.config.config.cmd = Some(c);
            st.config.config.args_escaped = Some(true);
            st.cmd_set = true;
            created_by
        }
        Kind::Entrypoint(form) => {
            let ep = command(form, &st.config);
            ctx.budget.charge_all(&ep).map_err(|e| err(e.to_string()))?;
            st.config.config.entrypoint = Some(ep.clone());
            if !st.cmd_set {
                st.config.config.cmd = None;
            }
            format!("ENTRYPOINT {}", crate::gofmt::quote_list(&ep))
        }
        Kind::Expose(text) => {
            // BuildKit sorts the specs as written, then expands each.
            let mut specs: Vec<&str> = text.split_whitespace().collect();
            specs.sort_unstable();
            let mut keys = Vec::new();
            for spec in specs {
                for port in words(spec, st)? {
                    keys.extend(super::expose::port_keys(&port).map_err(|e| err(e.to_string()))?);
                }
            }
            ctx.budget.charge_all(&keys).map_err(|e| err(e.to_string()))?;
            for key in &keys {
                st.config.config.exposed_ports.get_or_insert_with(Default::default).insert(key.clone(), json!({}));
            }
            super::expose::history(&keys, ctx.version)
        }
        Kind::Volume(form) => {
            let vols = match form {
                CommandForm::Exec(v) => v.iter().map(|x| word(x, st)).collect::<Result<Vec<_>, _>>()?,
                CommandForm::Shell(s) => words(s, st)?,
            };
            for v in &vols {
                st.config.config.volumes.get_or_insert_with(Default::default).insert(v.clone(), json!({}));
            }
            format!("VOLUME {}", crate::gofmt::list(&vols))
        }
        Kind::StopSignal(s) => {
            let s = word(s, st)?;
            validate_signal(&s).map_err(|e| err(e.to_string()))?;
            st.config.config.stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        Kind::Shell(v) => {
            st.config.config.shell = Some(v.clone());
            format!("SHELL {}", crate::gofmt::list(v))
        }
        Kind::Maintainer(m) => {
            st.config.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        Kind::Onbuild(t) => {
            // BuildKit records a trigger in the config only, not the history.
            st.config.config.on_build.get_or_insert_with(Vec::new).push(t.clone());
            return Ok(());
        }
        Kind::Healthcheck { flags, cmd } => {
            let hc = healthcheck(flags, cmd.as_ref()).map_err(|e| err(e.to_string()))?;
            let created_by = crate::gofmt::healthcheck(&hc);
            st.config.config.healthcheck = Some(hc);
            created_by
        }
        Kind::From { .. } | Kind::Run { .. } | Kind::Copy { .. } | Kind::Workdir(_) | Kind::Arg(_) => {
            unreachable!("handled by the stage lowering")
        }
    };
    ctx.budget.charge_str(&created_by).map_err(|e| err(e.to_string()))?;
    st.push_meta_entry(created_by);
    Ok(())
}

impl StageState {
    fn push_meta_entry(&mut self, created_by: String) {
        self.history.push(super::HistoryStep {
            entry: super::super::history(created_by, true),
            node: None,
            from_base: false,
        });
    }
}

/// An image-config instruction's value BuildKit refuses (its messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `STOPSIGNAL` of an unknown signal.
    #[error("invalid signal: {0}")]
    Signal(String),
    /// `HEALTHCHECK --retries` that is not a number.
    #[error("invalid --retries value {0:?}")]
    Retries(String),
    /// `HEALTHCHECK --retries` below zero (BuildKit's text).
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),
    /// A `HEALTHCHECK` duration under BuildKit's 1 ms minimum (0 is "unset").
    #[error("Interval {0:?} cannot be less than 1ms")]
    TooShort(String),
    /// A `HEALTHCHECK` duration flag that is not a Go duration.
    #[error("invalid --{flag} duration {value:?}")]
    Duration {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
    },
}

fn validate_signal(s: &str) -> Result<(), ConfigError> {
    if s.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n)) {
        return Ok(());
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let known = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    if known.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(ConfigError::Signal(s.to_string()))
    }
}

fn healthcheck(flags: &[(String, String)], cmd: Option<&CommandForm>) -> Result<HealthConfig, ConfigError> {
    let Some(cmd) = cmd else {
        return Ok(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() });
    };
    let test = match cmd {
        CommandForm::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
        CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
    };
    let mut hc = HealthConfig { test: Some(test), ..Default::default() };
    for (name, value) in flags {
        match name.as_str() {
            // Zero values are left out, as Go's `omitempty` leaves them.
            "retries" => {
                let retries: i64 = value.parse().map_err(|_| ConfigError::Retries(value.clone()))?;
                if retries < 0 {
                    return Err(ConfigError::NegativeRetries(retries));
                }
                hc.retries = (retries != 0).then_some(retries);
            }
            _ => {
                let bad = || ConfigError::Duration { flag: name.clone(), value: value.clone() };
                let ns = parse_duration(value).ok_or_else(bad)?;
                if ns != 0 && ns < 1_000_000 {
                    return Err(ConfigError::TooShort(name.clone()));
                }
                let slot = match name.as_str() {
                    "interval" => &mut hc.interval,
                    "timeout" => &mut hc.timeout,
                    "start-period" => &mut hc.start_period,
                    _ => &mut hc.start_interval,
                };
                *slot = (ns != 0).then_some(ns);
            }
        }
    }
    Ok(hc)
}

/// Parses Go-style durations (`1m30s`, `500ms`, `3s`) to nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}
