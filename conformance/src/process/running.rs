//! A process started for a test: its output captured line by line, waits
//! with deadlines that notice an early exit, and a stop on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use super::{POLL, ProcessError, locate};

/// How long a stopped process has between SIGTERM and SIGKILL by default.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// After an exit, how long output still in the pipes may take to arrive
/// (a grandchild may hold them open for ever).
const DRAIN: Duration = Duration::from_millis(500);

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error (logs).
    Stderr,
}

/// One line of a process's output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it was written.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// A command with a private home, ready to start.
pub struct Launch {
    command: Command,
    program: String,
    home: TempDir,
}

impl Launch {
    /// One of the real binaries (see [`locate`]).
    pub fn binary(name: &str) -> Result<Launch, ProcessError> {
        Launch::program(locate(name)?)
    }

    /// Any program: `HOME` is a new temporary directory (removed with the
    /// process) and no `EWII_*` variable of the test's environment is
    /// inherited, so the runner's settings cannot leak into the test.
    pub fn program(path: impl AsRef<Path>) -> Result<Launch, ProcessError> {
        let home = tempfile::tempdir().map_err(|source| ProcessError::Io {
            what: "create a temporary home".into(),
            source,
        })?;
        let mut command = Command::new(path.as_ref());
        scrub_environment(&mut command);
        command.env("HOME", home.path());
        Ok(Launch {
            command,
            program: program_name(path.as_ref()),
            home,
        })
    }

    /// The private home (to put files in, or name in arguments).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.command.env(key, value);
        self
    }

    /// Starts it.
    pub fn spawn(self) -> Result<RunningProcess, ProcessError> {
        let mut process = RunningProcess::spawn(self.command)?;
        process.program = self.program;
        process.home = Some(self.home);
        Ok(process)
    }
}

/// Removes every inherited `EWII_*` variable from `command`.
pub(super) fn scrub_environment(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EWII_") {
            command.env_remove(key);
        }
    }
}

fn program_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// What the reader threads collected.
#[derive(Default)]
struct Captured {
    lines: Mutex<Vec<Line>>,
    /// Streams not yet at end of file.
    open: AtomicUsize,
}

impl Captured {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<Line>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(self: Arc<Self>, stream: Stream, pipe: impl Read + Send + 'static) {
        self.open.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                self.lines().push(Line { stream, text });
                buf.clear();
            }
            self.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A started process. Dropping it stops it: SIGTERM, then SIGKILL after
/// [`STOP_GRACE`] (blocking the dropping thread that long at most); if the
/// test is panicking, its output is printed first.
pub struct RunningProcess {
    child: Child,
    program: String,
    captured: Arc<Captured>,
    exit: Option<(ExitStatus, Instant)>,
    home: Option<TempDir>,
}

impl RunningProcess {
    /// Starts `command` (stdin closed, stdout and stderr captured) as it
    /// is: no home of its own, environment untouched. [`Launch`] is the
    /// usual way in.
    pub fn spawn(mut command: Command) -> Result<RunningProcess, ProcessError> {
        let program = program_name(Path::new(command.get_program()));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Io {
                what: format!("start {program}"),
                source,
            })?;
        let captured = Arc::new(Captured::default());
        if let Some(out) = child.stdout.take() {
            captured.clone().read(Stream::Stdout, out);
        }
        if let Some(err) = child.stderr.take() {
            captured.clone().read(Stream::Stderr, err);
        }
        Ok(RunningProcess {
            child,
            program,
            captured,
            exit: None,
            home: None,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The private home [`Launch`] made, if any.
    pub fn home(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|h| h.path().to_owned())
    }

    /// Every line captured so far, in arrival order: each stream in the
    /// order written, the two streams interleaved as their pipes delivered.
    pub fn lines(&self) -> Vec<Line> {
        self.captured.lines().clone()
    }

    /// The output so far as text, stderr lines marked.
    pub fn output(&self) -> String {
        self.captured
            .lines()
            .iter()
            .map(|l| match l.stream {
                Stream::Stdout => l.text.clone(),
                Stream::Stderr => format!("[stderr] {}", l.text),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How it ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some((status, Instant::now()));
        }
        self.exit.map(|(s, _)| s)
    }

    /// Whether it has ended and its output is all in (or has had time to
    /// come in).
    fn finished(&mut self) -> bool {
        self.exit_status();
        self.exit.is_some_and(|(_, at)| {
            self.captured.open.load(Ordering::SeqCst) == 0 || at.elapsed() >= DRAIN
        })
    }

    fn exited(&mut self, what: String) -> ProcessError {
        ProcessError::Exited {
            program: self.program.clone(),
            status: self
                .exit_status()
                .map_or_else(|| "still running".into(), |s| s.to_string()),
            what,
            output: self.output(),
        }
    }

    /// Waits for the first line (on either stream, since the start) that
    /// `pred` accepts. Fails at the deadline, or as soon as the process has
    /// ended without writing it.
    pub async fn wait_for_line(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Line) -> bool,
    ) -> Result<Line, ProcessError> {
        let deadline = Instant::now() + within;
        let mut seen = 0;
        loop {
            // Ended before this look: every line it wrote is in it.
            let finished = self.finished();
            {
                let lines = self.captured.lines();
                if let Some(line) = lines[seen..].iter().find(|l| pred(l)) {
                    return Ok(line.clone());
                }
                seen = lines.len();
            }
            if finished {
                return Err(self.exited("the awaited line".into()));
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Deadline {
                    what: format!("the awaited line from {}", self.program),
                    within,
                    output: self.output(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until it has ended on its own and its output is in; how it
    /// ended. Fails at the deadline (and leaves it running).
    pub async fn wait_for_exit(&mut self, within: Duration) -> Result<ExitStatus, ProcessError> {
        let deadline = Instant::now() + within;
        loop {
            if self.finished()
                && let Some(status) = self.exit_status()
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Deadline {
                    what: format!("{} exiting", self.program),
                    within,
                    output: self.output(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What it wrote on `stream` so far, one line each.
    pub fn text(&self, stream: Stream) -> String {
        self.captured
            .lines()
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| format!("{}\n", l.text))
            .collect()
    }

    /// Sends SIGTERM (a polite stop) and returns at once; see
    /// [`RunningProcess::wait_for_exit`].
    pub fn terminate(&mut self) {
        if self.exit_status().is_none() {
            // Not reaped yet, so the pid is still this child's.
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        }
    }

    /// Waits until something accepts TCP connections at `addr`. Fails at
    /// the deadline, or as soon as the process has ended.
    pub async fn wait_for_port(
        &mut self,
        addr: SocketAddr,
        within: Duration,
    ) -> Result<(), ProcessError> {
        let deadline = Instant::now() + within;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if self.exit_status().is_some() {
                return Err(self.exited(format!("listening on {addr}")));
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Deadline {
                    what: format!("{} listening on {addr}", self.program),
                    within,
                    output: self.output(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops it: SIGTERM, then SIGKILL if it is still running after
    /// `grace`. Blocks the calling thread that long at most. Returns how it
    /// ended.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit_status() {
            return Some(status);
        }
        // Not reaped yet, so the pid is still this child's.
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill()
    }

    /// Kills it at once (SIGKILL, as a crash or `kill -9` would) and
    /// reaps it. Returns how it ended.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some((status, Instant::now()));
            }
        }
        self.exit.map(|(s, _)| s)
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- output of {} (pid {}) ---\n{}\n--- end of output ---",
                self.program,
                self.id(),
                self.output()
            );
        }
        self.stop(STOP_GRACE);
    }
}
