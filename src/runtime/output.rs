//! A container's stdout and stderr: two FIFOs in its directory, copied by the helper into the
//! container's log file in the CRI format (`crate::kubelet::logs`).
//!
//! The container holds each FIFO open read-write, so a write never fails with EPIPE while no
//! helper reads: it waits in the pipe (64 KiB, then the writer blocks) until a helper, this one
//! or the next after a restart, opens the read end again. The helper reads non-blocking from its
//! poll loop. What a container wrote just before exiting while no helper ran is lost with the
//! pipe.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::kubelet::logs::{LogWriter, Stream};

use super::error::RuntimeError;
use super::protocol::ContainerSpec;

/// Small defaults: boards log to SD cards.
const DEFAULT_MAX_BYTES: u64 = 1 << 20;
const DEFAULT_MAX_FILES: u32 = 2;
/// Output that stops mid-line for this long is logged as a `P` part, so that a prompt shows up
/// and a helper killed meanwhile loses at most this much of a line.
const PARTIAL_AFTER: Duration = Duration::from_secs(1);
/// One read takes what a default pipe holds.
const READ_SIZE: usize = 64 * 1024;
const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// Where a container's output is logged. Kept in meta.json for the helper that reattaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTarget {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub max_files: u32,
}

impl LogTarget {
    /// The spec's log file and rotation caps, a zero cap meaning the default.
    pub fn of(spec: &ContainerSpec) -> Self {
        LogTarget {
            path: spec.log_path.clone(),
            max_bytes: match spec.log_max_bytes {
                0 => DEFAULT_MAX_BYTES,
                n => n,
            },
            max_files: match spec.log_max_files {
                0 => DEFAULT_MAX_FILES,
                n => n,
            },
        }
    }
}

fn fifo_path(dir: &Path, stream: Stream) -> PathBuf {
    dir.join(match stream {
        Stream::Stdout => "stdout.fifo",
        Stream::Stderr => "stderr.fifo",
    })
}

/// Creates the FIFOs in the container's directory and opens them for the container, stdout
/// first. Read-write and blocking: a write waits for a reader instead of failing.
pub fn create_fifos(dir: &Path) -> Result<[OwnedFd; 2], RuntimeError> {
    let open = |stream| {
        let path = fifo_path(dir, stream);
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|e| RuntimeError::io("create the FIFO", &path)(e.into()))?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(RuntimeError::io("open the FIFO", &path))
    };
    Ok([open(Stream::Stdout)?, open(Stream::Stderr)?])
}

/// The helper's side of one container's output: the read ends of its FIFOs and its log.
pub struct Output {
    log: LogWriter,
    path: PathBuf,
    /// Non-blocking read ends, stdout then stderr; `None` once at end of file.
    fifos: [Option<File>; 2],
    /// Since when output has stopped mid-line.
    unfinished_since: Option<Instant>,
    /// Set after a failed write to the log, so that a full disk is reported once, not per read.
    failing: bool,
}

impl Output {
    /// Opens the read ends of the FIFOs in the container's directory `dir`, and the log file.
    pub fn open(dir: &Path, target: &LogTarget) -> Result<Output, RuntimeError> {
        let open = |stream| {
            let path = fifo_path(dir, stream);
            OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&path)
                .map_err(RuntimeError::io("open the FIFO", &path))
        };
        let fifos = [Some(open(Stream::Stdout)?), Some(open(Stream::Stderr)?)];
        let path = &target.path;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(RuntimeError::io("create", parent))?;
        }
        let max_files = usize::try_from(target.max_files).unwrap_or(usize::MAX);
        let log = LogWriter::open(path, target.max_bytes, max_files)
            .map_err(RuntimeError::io("open log", path))?;
        Ok(Output {
            log,
            path: path.clone(),
            fifos,
            unfinished_since: None,
            failing: false,
        })
    }

    /// The FIFOs still open, to poll for reading.
    pub fn fds(&self) -> impl Iterator<Item = (Stream, BorrowedFd<'_>)> {
        STREAMS
            .into_iter()
            .zip(&self.fifos)
            .filter_map(|(stream, fifo)| Some((stream, fifo.as_ref()?.as_fd())))
    }

    /// Logs what one read of `stream` returns. Never blocks. False when there was nothing.
    pub fn read(&mut self, stream: Stream) -> bool {
        let Some(fifo) = &mut self.fifos[stream as usize] else {
            return false;
        };
        let mut buf = [0u8; READ_SIZE];
        let n = match fifo.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return false,
            Err(e) => {
                let path = self.path.display();
                log::warn!("{path}: cannot read the container's {stream:?}: {e}");
                0
            }
        };
        if n == 0 {
            // Every writer is gone (the container closed it or exited): polling would spin.
            self.fifos[stream as usize] = None;
            return false;
        }
        let data = &buf[..n];
        let result = self.log.write(stream, data, SystemTime::now());
        self.report(result);
        if !data.ends_with(b"\n") {
            self.unfinished_since.get_or_insert_with(Instant::now);
        }
        true
    }

    /// Logs everything left in the FIFOs, then unfinished lines as parts. Call it once the
    /// container has exited: its writers are gone, so reading ends at end of file (or at an empty
    /// pipe, should a writer be left).
    pub fn finish(mut self) {
        for stream in STREAMS {
            while self.read(stream) {}
        }
        // Dropping flushes.
    }

    /// When a line left unfinished is due to be logged as a part.
    pub fn flush_due(&self) -> Option<Instant> {
        Some(self.unfinished_since? + PARTIAL_AFTER)
    }

    /// Logs unfinished lines as parts once they are due (see `flush_due`).
    pub fn flush_if_due(&mut self, now: Instant) {
        if self.flush_due().is_some_and(|due| due <= now) {
            self.unfinished_since = None;
            let result = self.log.flush_partial(SystemTime::now());
            self.report(result);
        }
    }

    fn report(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                log::warn!("cannot write container log {}: {e}", self.path.display());
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}

impl Drop for Output {
    /// Unfinished lines are logged as parts rather than lost: the container exited, was deleted,
    /// or the helper hands over to another.
    fn drop(&mut self) {
        let result = self.log.flush_partial(SystemTime::now());
        self.report(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_caps_mean_the_small_defaults() {
        let mut spec = ContainerSpec {
            log_path: "/logs/app.log".into(),
            ..Default::default()
        };
        let target = LogTarget::of(&spec);
        assert_eq!((target.max_bytes, target.max_files), (1 << 20, 2));
        (spec.log_max_bytes, spec.log_max_files) = (4096, 5);
        let target = LogTarget::of(&spec);
        assert_eq!(target.path, Path::new("/logs/app.log"));
        assert_eq!((target.max_bytes, target.max_files), (4096, 5));
    }

    /// A container directory with its FIFOs, and the container's ends of them.
    fn fifos(test: &str) -> (PathBuf, LogTarget, File, File) {
        let dir = std::env::temp_dir().join(format!("bramble-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let [out, err] = create_fifos(&dir).unwrap();
        let target = LogTarget {
            path: dir.join("logs/app.log"),
            max_bytes: 1 << 20,
            max_files: 2,
        };
        (dir, target, File::from(out), File::from(err))
    }

    /// (stream, tag, content) of each record.
    fn records(log: &str) -> Vec<Vec<&str>> {
        log.lines()
            .map(|l| l.splitn(4, ' ').skip(1).collect())
            .collect()
    }

    #[test]
    fn fifo_output_waits_for_a_reader_and_is_logged_per_stream() {
        use std::io::Write;
        let (dir, target, mut out, mut err) = fifos("output");
        // No reader yet (as while no helper runs): the write waits in the pipe.
        out.write_all(b"one\ntw").unwrap();

        let mut output = Output::open(&dir, &target).unwrap();
        assert!(output.read(Stream::Stdout));
        assert!(!output.read(Stream::Stdout), "an empty FIFO must not block");
        err.write_all(b"oops\n").unwrap();
        assert!(output.read(Stream::Stderr));
        out.write_all(b"o\nthree").unwrap();
        drop((out, err)); // the container exits
        output.finish();

        let log = std::fs::read_to_string(&target.path).unwrap();
        assert_eq!(
            records(&log),
            [
                ["stdout", "F", "one"],
                ["stderr", "F", "oops"],
                ["stdout", "F", "two"],
                ["stdout", "P", "three"],
            ],
            "{log}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_left_unfinished_is_logged_as_a_part_after_a_pause() {
        use std::io::Write;
        let (dir, target, mut out, _err) = fifos("pause");
        let mut output = Output::open(&dir, &target).unwrap();
        out.write_all(b"password: ").unwrap();
        output.read(Stream::Stdout);
        let due = output
            .flush_due()
            .expect("a deadline for the unfinished line");
        output.flush_if_due(due - Duration::from_millis(1));
        assert_eq!(std::fs::read_to_string(&target.path).unwrap(), "");
        output.flush_if_due(due);
        let log = std::fs::read_to_string(&target.path).unwrap();
        assert_eq!(records(&log), [["stdout", "P", "password: "]]);
        assert_eq!(output.flush_due(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
