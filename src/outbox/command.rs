//! The command delivery target: run the route's `argv` (no shell) with the
//! event body on stdin and the event's metadata in the environment.
//!
//! The command inherits appliance's environment plus `APPLIANCE_PROVIDER`,
//! `APPLIANCE_EVENT_ID`, `APPLIANCE_EVENT_TYPE`, `APPLIANCE_DELIVERY_ID`
//! (`dlv_<id>`, the same on every retry), `APPLIANCE_ATTEMPT` (1 for the
//! first) and `APPLIANCE_ROUTE` (NUL characters, which the environment cannot
//! carry, become `_`). The body is written to stdin, which is then closed; a
//! command that does not read it is fine (the write error is ignored).
//!
//! Outcome rules: exit 0 = `Delivered` (exit_code 0); exit N = `Retry`
//! ("exit code N", exit_code N); death by a signal = `Retry` ("killed by
//! signal N"); still running at the route's timeout = `Retry` ("timeout after
//! <d>"); a program that cannot be started = `Retry` ("cannot run <argv0>:
//! <reason>"). Never `GiveUp`: the schedule decides when to stop. The excerpt
//! is stdout then stderr, labelled `stdout:` / `stderr:` when both have
//! output, at most `EXCERPT_MAX` bytes in all (when both overflow, each gets
//! at least half).
//!
//! Process handling: the command runs in its own process group, and that
//! whole group (the command and whatever it started) is killed with SIGKILL
//! when the attempt ends, in every case: at the timeout, as soon as the
//! command itself exits, and when the attempt is dropped (shutdown). A
//! command that wants to leave something running must detach it into its
//! own session (`setsid`). The group is always killed while its leader is
//! still unreaped (its exit is observed with `waitid(WNOWAIT)`, woken by
//! SIGCHLD), so the group id cannot have been reused by another process;
//! only then is the leader reaped (no zombies).
//! stdout and stderr are read concurrently with the run, keeping at most
//! `EXCERPT_MAX` bytes of each and discarding the rest, so the command never
//! blocks on a full pipe. Once the group is dead the readers normally see
//! end-of-file at once; a process that escaped the group (`setsid`) and kept
//! a pipe open is not waited for beyond `READ_GRACE`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use super::attempt::{Attempt, EXCERPT_MAX, Job, Verdict};
use super::http::{excerpt, timeout_error};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long the output readers may still run once the process group is
/// dead (only a process that escaped the group can hold a pipe open then).
const READ_GRACE: Duration = Duration::from_millis(500);
/// How often the exit is checked should SIGCHLD be unavailable.
const POLL_FALLBACK: Duration = Duration::from_millis(20);
const STDOUT_LABEL: &str = "stdout:\n";
const STDERR_LABEL: &str = "\nstderr:\n";

/// One route's command target.
#[derive(Debug, Clone)]
pub struct CommandTarget {
    argv: Vec<String>,
    timeout: Duration,
    /// Env vars the command must not inherit (the appliance's own secrets).
    hidden_env: Vec<String>,
}

/// What the run produced, before timing is added.
struct Outcome {
    exit_code: Option<i32>,
    error: Option<String>,
    excerpt: Option<String>,
    verdict: Verdict,
}

impl Outcome {
    fn retry(error: String) -> Outcome {
        Outcome {
            exit_code: None,
            error: Some(error),
            excerpt: None,
            verdict: Verdict::Retry { retry_after: None },
        }
    }
}

/// How the process ended.
enum Ended {
    Exited(ExitStatus),
    TimedOut,
    WaitFailed(std::io::Error),
}

impl CommandTarget {
    pub fn new(argv: Vec<String>, timeout: Duration) -> CommandTarget {
        CommandTarget {
            argv,
            timeout,
            hidden_env: Vec::new(),
        }
    }

    /// The command inherits the environment minus these variables: the
    /// ones that hold the appliance's own secrets.
    pub fn hiding_env(mut self, vars: Vec<String>) -> CommandTarget {
        self.hidden_env = vars;
        self
    }

    /// One attempt: run the command for `job` (see the module doc).
    pub async fn deliver(&self, job: &Job) -> Attempt {
        let at_ms = crate::store::now_ms();
        let started = Instant::now();
        let outcome = self.run(job).await;
        Attempt {
            at_ms,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            status_code: None,
            exit_code: outcome.exit_code,
            error: outcome.error,
            response_excerpt: outcome.excerpt,
            verdict: outcome.verdict,
        }
    }

    async fn run(&self, job: &Job) -> Outcome {
        let Some((program, args)) = self.argv.split_first() else {
            return Outcome::retry("cannot run: empty command".to_owned());
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Listening before the child exists: its SIGCHLD cannot be missed.
        let mut sigchld = signal(SignalKind::child()).ok();

        let mut command = Command::new(program);
        for var in &self.hidden_env {
            command.env_remove(var);
        }
        command
            .args(args)
            .env("APPLIANCE_PROVIDER", env_value(&job.provider))
            .env("APPLIANCE_EVENT_ID", env_value(&job.event_id))
            .env("APPLIANCE_EVENT_TYPE", env_value(&job.event_type))
            .env("APPLIANCE_DELIVERY_ID", job.webhook_id())
            .env("APPLIANCE_ATTEMPT", job.attempt.to_string())
            .env("APPLIANCE_ROUTE", env_value(&job.route))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return Outcome::retry(format!("cannot run {program}: {}", spawn_reason(&e))),
        };
        // Declared after `child`, so dropped before it: an abandoned attempt
        // kills the group while the leader is still unreaped.
        let mut group = Group::new(child.id());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let mut out = Vec::new();
        let mut err = Vec::new();
        let ended = {
            let feed = feed(stdin, &job.body);
            let drain = async { tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err)) };
            let wait = wait_then_kill(&mut child, &mut group, deadline, &mut sigchld);
            tokio::pin!(feed, drain, wait);
            let (mut fed, mut drained) = (false, false);
            let ended = loop {
                tokio::select! {
                    ended = &mut wait => break ended,
                    () = &mut feed, if !fed => fed = true,
                    _ = &mut drain, if !drained => drained = true,
                }
            };
            // The group is dead; stdin is closed when `feed` is dropped here.
            if !drained {
                let _ = tokio::time::timeout(READ_GRACE, &mut drain).await;
            }
            ended
        };

        let excerpt = combined_excerpt(&out, &err);
        let (exit_code, error, verdict) = match ended {
            Ended::Exited(status) => match (status.code(), status.signal()) {
                (Some(0), _) => (Some(0), None, Verdict::Delivered),
                (Some(code), _) => (Some(code), Some(format!("exit code {code}")), retry()),
                (None, Some(sig)) => (None, Some(format!("killed by signal {sig}")), retry()),
                (None, None) => (None, Some(format!("ended: {status}")), retry()),
            },
            Ended::TimedOut => (None, Some(timeout_error(self.timeout)), retry()),
            Ended::WaitFailed(e) => (
                None,
                Some(format!("cannot wait for {program}: {e}")),
                retry(),
            ),
        };
        Outcome {
            exit_code,
            error,
            excerpt,
            verdict,
        }
    }
}

fn retry() -> Verdict {
    Verdict::Retry { retry_after: None }
}

/// The environment cannot carry NUL.
fn env_value(text: &str) -> String {
    text.replace('\0', "_")
}

fn spawn_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "not found".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// The command's process group, killed (SIGKILL) by `kill` and on drop until
/// disarmed. Only ever killed while the leader is unreaped.
struct Group {
    pgid: Option<libc::pid_t>,
}

impl Group {
    fn new(leader: Option<u32>) -> Group {
        Group {
            // never 0 or 1: killpg(0) would be our own group
            pgid: leader
                .and_then(|p| libc::pid_t::try_from(p).ok())
                .filter(|&p| p > 1),
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: a plain syscall with no memory arguments. The group id
            // is our unreaped child's pid, so it names that child's group.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the leader to exit or the deadline, kills the whole group,
/// then reaps the leader.
async fn wait_then_kill(
    child: &mut Child,
    group: &mut Group,
    deadline: tokio::time::Instant,
    sigchld: &mut Option<Signal>,
) -> Ended {
    let mut timed_out = false;
    if let Some(pid) = group.pgid {
        loop {
            if has_exited(pid) {
                break;
            }
            tokio::select! {
                () = next_sigchld(sigchld) => {}
                () = tokio::time::sleep_until(deadline) => {
                    timed_out = !has_exited(pid);
                    break;
                }
            }
        }
    }
    group.kill();
    let status = match group.pgid {
        Some(_) => child.wait().await,
        // no usable pid (cannot happen for a child just spawned): reap, bounded
        None => match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                timed_out = true;
                let _ = child.start_kill();
                child.wait().await
            }
        },
    };
    group.disarm();
    match (timed_out, status) {
        (true, _) => Ended::TimedOut,
        (false, Ok(status)) => Ended::Exited(status),
        (false, Err(e)) => Ended::WaitFailed(e),
    }
}

/// Whether our child `pid` has exited, without reaping it (`WNOWAIT`).
fn has_exited(pid: libc::pid_t) -> bool {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return true;
    };
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero is valid; waitid
        // only writes into it. si_pid stays 0 when no child is waitable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, flags) };
        if rc == 0 {
            // SAFETY: waitid filled (or left zeroed) the struct.
            return unsafe { info.si_pid() } != 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // ECHILD: nothing left to wait for; `Child::wait` will say how
            return true;
        }
    }
}

async fn next_sigchld(sigchld: &mut Option<Signal>) {
    match sigchld {
        Some(s) => {
            if s.recv().await.is_none() {
                *sigchld = None;
            }
        }
        None => tokio::time::sleep(POLL_FALLBACK).await,
    }
}

/// Writes the body and closes stdin; a command that exits or closes stdin
/// without reading it is not an error.
async fn feed(stdin: Option<ChildStdin>, body: &[u8]) {
    if let Some(mut stdin) = stdin {
        let _ = stdin.write_all(body).await;
        let _ = stdin.shutdown().await;
    }
}

/// Reads `pipe` to its end, keeping its first `EXCERPT_MAX` bytes.
async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, kept: &mut Vec<u8>) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = EXCERPT_MAX.saturating_sub(kept.len());
                if let Some(data) = buf.get(..n.min(room)) {
                    kept.extend_from_slice(data);
                }
            }
        }
    }
}

/// stdout then stderr, labelled when both have output, `EXCERPT_MAX` in all.
fn combined_excerpt(out: &[u8], err: &[u8]) -> Option<String> {
    match (out.is_empty(), err.is_empty()) {
        (true, true) => None,
        (false, true) => Some(excerpt(out, EXCERPT_MAX)),
        (true, false) => Some(excerpt(err, EXCERPT_MAX)),
        (false, false) => {
            let budget = EXCERPT_MAX.saturating_sub(STDOUT_LABEL.len() + STDERR_LABEL.len());
            let (o, e) = split_budget(out.len(), err.len(), budget);
            let out_text = excerpt(out, o);
            Some(format!(
                "{STDOUT_LABEL}{}{STDERR_LABEL}{}",
                out_text.strip_suffix('\n').unwrap_or(&out_text),
                excerpt(err, e)
            ))
        }
    }
}

/// Bytes for each stream: all of both when they fit, else each at least
/// half of `budget`, a short one leaving its unused share to the other.
fn split_budget(out: usize, err: usize, budget: usize) -> (usize, usize) {
    if out.saturating_add(err) <= budget {
        return (out, err);
    }
    let half = budget / 2;
    if out <= half {
        (out, budget - out)
    } else if err <= half {
        (budget - err, err)
    } else {
        (half, budget - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::path::Path;

    /// Writes an executable script through a separate process, so that no
    /// write descriptor to it is ever open in this (multi-threaded) test
    /// process, where a concurrent fork could inherit it and make exec fail
    /// with ETXTBSY.
    fn script(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&path)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        sh.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(sh.wait().unwrap().success());
        path.to_str().unwrap().to_owned()
    }

    fn job(body: Vec<u8>) -> Job {
        Job {
            delivery_id: 7,
            attempt: 3,
            provider: "github".into(),
            route: "github.deploys".into(),
            event_id: "abc-123".into(),
            event_type: "push".into(),
            body,
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }

    const LONG: Duration = Duration::from_secs(30);

    fn target(argv: &[&str], timeout: Duration) -> CommandTarget {
        CommandTarget::new(argv.iter().map(|s| s.to_string()).collect(), timeout)
    }

    fn read_pid(path: &Path) -> libc::pid_t {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    fn errno_of_kill0(pid: libc::pid_t) -> Option<i32> {
        let rc = unsafe { libc::kill(pid, 0) };
        (rc != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
    }

    /// Waits (event-driven, through a pidfd) until `pid`, which need not be
    /// our child, has exited, giving up after a generous bound; then checks
    /// that it is gone: reaped (ESRCH) or a zombie left for its new parent.
    fn assert_ends(pid: libc::pid_t) {
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            let mut p = libc::pollfd {
                fd: fd as i32,
                events: libc::POLLIN,
                revents: 0,
            };
            let n = unsafe { libc::poll(&mut p, 1, 10_000) };
            unsafe { libc::close(fd as i32) };
            assert_eq!(n, 1, "process {pid} still running");
        }
        if errno_of_kill0(pid) != Some(libc::ESRCH) {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            assert!(
                stat.is_empty() || state.starts_with('Z'),
                "process {pid} alive: {stat}"
            );
        }
    }

    #[tokio::test]
    async fn body_on_stdin_and_env_reach_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let run = script(
            dir.path(),
            "record.sh",
            "#!/bin/sh\ncat > \"$1/body\"\nenv | grep '^APPLIANCE_' | sort > \"$1/env\"\n\
             printf 'PATH=%s\\nARG2=%s\\n' \"$PATH\" \"$2\" >> \"$1/env\"\necho hello\n",
        );
        let body = b"{\"ref\":\"main\",\"bin\":\"\xff\x00\"}".to_vec();
        let a = target(&[&run, d, "second arg"], LONG)
            .deliver(&job(body.clone()))
            .await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert_eq!(a.exit_code, Some(0));
        assert_eq!(a.status_code, None);
        assert_eq!(a.error, None);
        assert_eq!(a.response_excerpt.as_deref(), Some("hello\n"));
        assert!(a.at_ms > 0 && a.duration_ms >= 0);
        assert_eq!(std::fs::read(dir.path().join("body")).unwrap(), body);
        let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            env,
            format!(
                "APPLIANCE_ATTEMPT=3\nAPPLIANCE_DELIVERY_ID=dlv_7\nAPPLIANCE_EVENT_ID=abc-123\n\
                 APPLIANCE_EVENT_TYPE=push\nAPPLIANCE_PROVIDER=github\nAPPLIANCE_ROUTE=github.deploys\n\
                 PATH={path}\nARG2=second arg\n"
            )
        );
    }

    #[tokio::test]
    async fn exit_code_is_a_retry_with_output() {
        let dir = tempfile::tempdir().unwrap();
        let run = script(dir.path(), "fail.sh", "#!/bin/sh\necho oops >&2\nexit 3\n");
        let a = target(&[&run], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.exit_code, Some(3));
        assert_eq!(a.error.as_deref(), Some("exit code 3"));
        assert_eq!(a.response_excerpt.as_deref(), Some("oops\n"));
    }

    #[tokio::test]
    async fn both_streams_are_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let run = script(dir.path(), "both.sh", "#!/bin/sh\necho out\necho err >&2\n");
        let a = target(&[&run], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.verdict, Verdict::Delivered);
        assert_eq!(
            a.response_excerpt.as_deref(),
            Some("stdout:\nout\nstderr:\nerr\n")
        );
    }

    #[tokio::test]
    async fn killed_by_a_signal() {
        let dir = tempfile::tempdir().unwrap();
        let run = script(dir.path(), "die.sh", "#!/bin/sh\nkill -TERM $$\n");
        let a = target(&[&run], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.exit_code, None);
        assert_eq!(a.error.as_deref(), Some("killed by signal 15"));
    }

    #[tokio::test]
    async fn timeout_kills_the_command_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let run = script(
            dir.path(),
            "hang.sh",
            "#!/bin/sh\nsleep 1000 &\necho $! > \"$1/child.pid\"\necho $$ > \"$1/main.pid\"\n\
             echo started\nsleep 1000\n",
        );
        let a = target(&[&run, d], Duration::from_secs(3))
            .deliver(&job(b"{}".to_vec()))
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(a.error.as_deref(), Some("timeout after 3s"));
        assert_eq!(a.exit_code, None);
        assert_eq!(a.response_excerpt.as_deref(), Some("started\n"));
        assert!(a.duration_ms >= 3000);
        // the command was our child, reaped before deliver returned
        let main = read_pid(&dir.path().join("main.pid"));
        assert_eq!(errno_of_kill0(main), Some(libc::ESRCH));
        // its child was killed with the group (its new parent reaps it)
        assert_ends(read_pid(&dir.path().join("child.pid")));
    }

    #[tokio::test]
    async fn leftovers_are_killed_when_the_command_exits() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let run = script(
            dir.path(),
            "bg.sh",
            "#!/bin/sh\nsleep 1000 &\necho $! > \"$1/child.pid\"\necho bye\n",
        );
        let a = target(&[&run, d], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert_eq!(a.response_excerpt.as_deref(), Some("bye\n"));
        assert_ends(read_pid(&dir.path().join("child.pid")));
    }

    /// A process that left the group (setsid) and keeps stdout open does not
    /// hold the attempt beyond the read grace.
    #[tokio::test]
    async fn escaped_process_holding_stdout_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let run = script(
            dir.path(),
            "escape.sh",
            "#!/bin/sh\n\
             setsid sh -c 'echo $$ > \"$1/e.tmp\"; mv \"$1/e.tmp\" \"$1/escaped.pid\"; exec sleep 1000' x \"$1\" &\n\
             while [ ! -e \"$1/escaped.pid\" ]; do :; done\necho done\n",
        );
        let a = target(&[&run, d], LONG).deliver(&job(vec![])).await;
        let escaped = read_pid(&dir.path().join("escaped.pid"));
        let still_alive = errno_of_kill0(escaped).is_none();
        unsafe { libc::kill(escaped, libc::SIGKILL) };
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert_eq!(a.response_excerpt.as_deref(), Some("done\n"));
        assert!(still_alive, "setsid escapes the group kill");
    }

    #[tokio::test]
    async fn dropped_attempt_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let fifo = dir.path().join("ready");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        let run = script(
            dir.path(),
            "wait.sh",
            "#!/bin/sh\nsleep 1000 &\necho \"$$ $!\" > \"$1/ready\"\nsleep 1000\n",
        );
        let t = target(&[&run, &d], Duration::from_secs(3600));
        let attempt = tokio::spawn(async move { t.deliver(&job(vec![])).await });
        // opening the FIFO for reading blocks until the script writes to it
        let line = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap())
            .await
            .unwrap();
        attempt.abort();
        assert!(attempt.await.unwrap_err().is_cancelled());
        for pid in line.split_whitespace() {
            assert_ends(pid.parse().unwrap());
        }
    }

    #[tokio::test]
    async fn cannot_run() {
        let a = target(&["/nonexistent/appliance-test-prog", "x"], LONG)
            .deliver(&job(vec![]))
            .await;
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
        assert_eq!(
            a.error.as_deref(),
            Some("cannot run /nonexistent/appliance-test-prog: not found")
        );
        assert_eq!(a.exit_code, None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-executable.sh");
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        let p = path.to_str().unwrap();
        let a = target(&[p], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.error, Some(format!("cannot run {p}: permission denied")));

        let a = CommandTarget::new(vec![], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.error.as_deref(), Some("cannot run: empty command"));
        assert_eq!(a.verdict, Verdict::Retry { retry_after: None });
    }

    #[tokio::test]
    async fn big_output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let run = script(
            dir.path(),
            "loud.sh",
            "#!/bin/sh\nhead -c 300000 /dev/zero | tr '\\0' a\nhead -c 300000 /dev/zero | tr '\\0' b >&2\n",
        );
        let a = target(&[&run], LONG).deliver(&job(vec![])).await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        let text = a.response_excerpt.unwrap();
        assert!(text.len() <= EXCERPT_MAX, "{}", text.len());
        assert!(text.starts_with("stdout:\naaaa"), "{text}");
        let (o, e) = text.split_once(STDERR_LABEL).unwrap();
        assert!(o.len() > EXCERPT_MAX / 2 - 20 && e.len() > EXCERPT_MAX / 2 - 20);
        assert!(e.bytes().all(|b| b == b'b'));
    }

    #[tokio::test]
    async fn big_body_ignored_by_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let run = script(dir.path(), "ignore.sh", "#!/bin/sh\necho ok\n");
        let a = target(&[&run], LONG)
            .deliver(&job(vec![b'x'; 1 << 20]))
            .await;
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert_eq!(a.response_excerpt.as_deref(), Some("ok\n"));
        // and one that reads part of it, then fails
        let run = script(
            dir.path(),
            "partial.sh",
            "#!/bin/sh\nhead -c 10 > /dev/null\nexit 4\n",
        );
        let a = target(&[&run], LONG)
            .deliver(&job(vec![b'x'; 1 << 20]))
            .await;
        assert_eq!(a.error.as_deref(), Some("exit code 4"));
    }

    #[test]
    fn budget_split() {
        assert_eq!(split_budget(10, 20, 100), (10, 20));
        assert_eq!(split_budget(10, 500, 100), (10, 90));
        assert_eq!(split_budget(500, 10, 100), (90, 10));
        assert_eq!(split_budget(500, 500, 100), (50, 50));
        assert_eq!(combined_excerpt(b"", b""), None);
        assert_eq!(env_value("a\0b"), "a_b");
    }
}
