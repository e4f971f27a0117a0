//! Starts child processes from one long-lived thread.
//!
//! A child's parent-death signal (`PR_SET_PDEATHSIG`) fires when the
//! *thread* that forked it ends, not the process. tokio's worker threads
//! can end: a worker that ran `block_in_place` retires to the blocking
//! pool, whose idle threads exit after ten seconds, and a step helper it
//! had started was then killed in the middle of a long step. Children that
//! must die with the server, and only then, are started here.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::process::{Child, Command};

struct Job {
    runtime: tokio::runtime::Handle,
    command: Command,
    reply: tokio::sync::oneshot::Sender<std::io::Result<Child>>,
}

fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("kiln-spawner".into())
            .spawn(move || {
                for mut job in rx {
                    let _in_runtime = job.runtime.enter();
                    let _ = job.reply.send(job.command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `command` (in the current tokio runtime) from the spawner thread,
/// which lives as long as the process; the caller's async thread waits for
/// nothing.
pub async fn spawn(command: Command) -> std::io::Result<Child> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job { runtime: tokio::runtime::Handle::current(), command, reply };
    let gone = || std::io::Error::other("the spawner thread is gone");
    spawner().lock().map_err(|_| gone())?.send(job).map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    /// A child that dies with the thread that forked it, started from a
    /// thread that ends at once; how it ended.
    async fn started_from_a_passing_thread(through_spawner: bool) -> std::process::ExitStatus {
        let runtime = tokio::runtime::Handle::current();
        let child = std::thread::spawn(move || {
            let _in_runtime = runtime.enter();
            let runtime = runtime.clone();
            let mut cmd = tokio::process::Command::new("sh");
            cmd.args(["-c", "sleep 0.5"]);
            // SAFETY: prctl is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            if through_spawner { runtime.block_on(super::spawn(cmd)) } else { cmd.spawn() }.unwrap()
        })
        .join()
        .unwrap();
        child.wait_with_output().await.unwrap().status
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn children_outlive_the_thread_that_asked_for_them() {
        let control = started_from_a_passing_thread(false).await;
        assert_eq!(control.signal(), Some(libc::SIGKILL), "control: forked by the passing thread, it dies with it");
        let status = started_from_a_passing_thread(true).await;
        assert!(status.success(), "forked by the spawner thread, it runs to its end: {status:?}");
    }
}
