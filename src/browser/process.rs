//! The Chromium process: found, spawned, watched and always reaped.
//!
//! chromiumoxide's own launcher cannot give us what clerk needs: Chromium must die with
//! clerk even when clerk is SIGKILLed, and every exit path must reap it. So clerk spawns
//! Chromium itself, in its own process group, with `PR_SET_PDEATHSIG(SIGKILL)`, from one
//! long-lived launcher thread (the death signal is tied to the thread that forked, so a
//! short-lived runtime thread would kill Chromium early). Dropping a [`ChromiumProcess`]
//! kills the whole group and waits for the browser process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::BrowserError;

/// Where clerk looks for Chromium when `CLERK_CHROMIUM` is not set.
const CANDIDATES: &[&str] = &[
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    "/usr/bin/google-chrome-stable",
];

/// Finds the Chromium executable: `CLERK_CHROMIUM`, then the usual Debian paths.
pub fn find_chromium() -> Result<PathBuf, BrowserError> {
    if let Some(p) = std::env::var_os("CLERK_CHROMIUM") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BrowserError::NotFound(format!(
                "CLERK_CHROMIUM={} is not a file",
                p.display()
            )))
        };
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BrowserError::NotFound(format!(
                "none of {} exists; install it with `apt-get install -y chromium` or set CLERK_CHROMIUM",
                CANDIDATES.join(", ")
            ))
        })
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The launcher thread: lives as long as the process, so the parent-death signal of every
/// Chromium it forks fires only when clerk itself dies.
fn launcher() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static LAUNCHER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("clerk-chromium-launcher".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start launcher thread: {e}"));
        Mutex::new(tx)
    })
}

/// A running Chromium. Dropping it kills the process group and reaps the browser.
pub struct ChromiumProcess {
    child: Option<Child>,
    pid: i32,
    /// Last lines Chromium wrote to stderr (for launch and crash messages).
    stderr_tail: Arc<Mutex<Vec<String>>>,
    /// The profile directory, removed when the process is gone.
    _profile: tempfile::TempDir,
}

impl ChromiumProcess {
    /// Spawns Chromium with `args` and a fresh profile, and waits for its DevTools URL.
    pub fn spawn(
        executable: &Path,
        args: &[String],
        launch_timeout: Duration,
    ) -> Result<(ChromiumProcess, String), BrowserError> {
        let profile = tempfile::Builder::new()
            .prefix("clerk-profile-")
            .tempdir()
            .map_err(|e| BrowserError::Launch(format!("cannot create a profile directory: {e}")))?;
        let mut cmd = Command::new(executable);
        cmd.args(args)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        launcher()
            .lock()
            .map_err(|_| BrowserError::Launch("launcher thread lock poisoned".into()))?
            .send((cmd, reply_tx))
            .map_err(|_| BrowserError::Launch("launcher thread is gone".into()))?;
        let mut child = reply_rx
            .recv()
            .map_err(|_| BrowserError::Launch("launcher thread is gone".into()))?
            .map_err(|e| {
                BrowserError::Launch(format!("cannot start {}: {e}", executable.display()))
            })?;
        let pid = child.id() as i32;
        live_pids().lock().map(|mut p| p.push(pid)).ok();

        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = mpsc::channel::<String>();
        if let Some(stderr) = child.stderr.take() {
            let tail = stderr_tail.clone();
            // Drain stderr for the browser's whole life: a full pipe would block Chromium.
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("DevTools listening on ") {
                        if let Some(tx) = url_tx.take() {
                            let _ = tx.send(rest.trim().to_owned());
                        }
                    }
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= 40 {
                            t.remove(0);
                        }
                        t.push(line);
                    }
                }
            });
        }
        let mut process = ChromiumProcess {
            child: Some(child),
            pid,
            stderr_tail,
            _profile: profile,
        };
        match url_rx.recv_timeout(launch_timeout) {
            Ok(url) => Ok((process, url)),
            Err(_) => {
                let exited = process
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                let tail = process.stderr_tail();
                process.kill();
                Err(BrowserError::Launch(format!(
                    "Chromium did not report a DevTools URL within {:?}{}; its stderr ended with:\n{}",
                    launch_timeout,
                    exited.map(|s| format!(" (it exited: {s})")).unwrap_or_default(),
                    tail
                )))
            }
        }
    }

    /// The browser process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit status if the browser process has exited (it is reaped then), else `None`.
    /// After [`ChromiumProcess::kill`] it reports nothing.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// What Chromium last wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default()
    }

    /// Kills the process group and reaps the browser process. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscalls on a process group we created.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            live_pids()
                .lock()
                .map(|mut p| p.retain(|&x| x != self.pid))
                .ok();
        }
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn live_pids() -> &'static Mutex<Vec<i32>> {
    static PIDS: OnceLock<Mutex<Vec<i32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Kills every Chromium this process started and has not reaped yet (Ctrl-C, fatal errors).
pub fn kill_all() {
    let pids: Vec<i32> = live_pids().lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: plain syscall on a process group we created.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}
