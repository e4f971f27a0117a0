//! The `kiln` command: `kiln serve` (the Function Builder API server) and
//! the hidden helper verbs the server runs one process per step.

mod cli;
mod client_cli;
mod doctor_cli;
mod history_cli;
mod serve;
mod verify_cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Must run before any thread exists: a re-executed server enters its
    // user namespace here.
    let in_namespace = match kiln_runtime::userns::enter_if_requested() {
        Ok(entered) => entered,
        Err(e) => {
            eprintln!("kiln: {e}");
            return ExitCode::from(1);
        }
    };
    let args = cli::Cli::parse();
    match args.command {
        cli::Command::Serve(opts) => serve::main(*opts, in_namespace),
        cli::Command::Build(opts) => client_cli::build(opts),
        cli::Command::Keygen { out, signing: false } => client_cli::keygen(&out),
        cli::Command::Keygen { out, signing: true } => verify_cli::keygen(&out),
        cli::Command::Verify(args) => verify_cli::main(*args),
        cli::Command::Doctor(args) => doctor_cli::main(*args),
        cli::Command::DoctorProbe { data_dir } => doctor_cli::probe(&data_dir, in_namespace),
        cli::Command::Cache { action, url, payload_secret } => {
            client_cli::cache(action, &url, payload_secret.as_deref())
        }
        cli::Command::History(args) => history_cli::history(&args),
        cli::Command::Ui { url, payload_secret, valid_for } => {
            history_cli::ui_link(&url, payload_secret.as_deref(), valid_for)
        }
        cli::Command::RunStep { request } => {
            kiln_runtime::reaper::run_as_namespace_init(|| cli::helper(&request, cli::run_step))
        }
        cli::Command::FileOp { request } => cli::helper(&request, cli::file_op),
    }
}
