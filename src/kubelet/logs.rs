//! Container logs as the kubelet keeps and serves them.
//!
//! Files use the CRI format: one record per line, `TIMESTAMP STREAM TAG CONTENT`, e.g.
//! `2026-11-26T14:27:45.123456789Z stdout F hello`, where tag `F` ends a line and `P` is a part
//! of a longer one. `LogWriter` appends records and rotates `PATH` to `PATH.1`, `PATH.2`...
//! (higher is older); `read_logs` serves `GET .../pods/NAME/log` from all of them, oldest first,
//! and `follow` goes on from where it stopped for `follow=true`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest content of one record; longer lines become `P` parts (containerd's default too).
pub const MAX_LINE: usize = 16 * 1024;
/// A reader joins `P` parts up to this size, then passes the line on unfinished, so a process
/// that never prints a newline cannot make it buffer without bound.
const MAX_JOINED: usize = 1 << 20;
/// How often `follow` looks for new data.
const POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The query parameters of a log request that shape the output. `container` and `previous`
/// choose the file, which is the caller's business.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<SystemTime>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    /// Parses the query; unknown parameters are ignored. Errors are worded for a 400.
    pub fn from_query(params: &[(String, String)], now: SystemTime) -> Result<LogOptions, String> {
        let mut opts = LogOptions::default();
        let (mut since_seconds, mut since_time) = (None, None);
        for (key, value) in params {
            match key.as_str() {
                "follow" => opts.follow = parse_bool(value),
                "timestamps" => opts.timestamps = parse_bool(value),
                "tailLines" => opts.tail_lines = Some(parse_count(key, value, 0)?),
                "limitBytes" => opts.limit_bytes = Some(parse_count(key, value, 1)?),
                "sinceSeconds" => since_seconds = Some(parse_count(key, value, 1)?),
                "sinceTime" => {
                    let time = humantime::parse_rfc3339_weak(value).map_err(|e| {
                        format!("sinceTime: invalid value {value:?}: expected an RFC 3339 UTC time ({e})")
                    })?;
                    since_time = Some(time);
                }
                _ => {}
            }
        }
        opts.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into());
            }
            (Some(seconds), None) => Some(
                now.checked_sub(Duration::from_secs(seconds as u64)) // usize fits in u64
                    .unwrap_or(UNIX_EPOCH),
            ),
            (None, time) => time,
        };
        Ok(opts)
    }
}

/// Like the API server's query conversion: anything but "false" or "0" is true.
fn parse_bool(value: &str) -> bool {
    !(value.eq_ignore_ascii_case("false") || value == "0")
}

fn parse_count(key: &str, value: &str, min: usize) -> Result<usize, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("{key}: invalid value {value:?}: must be an integer"))?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| format!("{key}: invalid value {n}: must be greater than or equal to {min}"))
}

/// Appends a container's output to its log file in CRI format, rotating by size. Used by
/// whoever owns the container's stdout and stderr pipes.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
    /// Per stream, output after the last newline.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Appends to `path` (created if missing). A file grows to at most `max_bytes` before it
    /// becomes `PATH.1`; `max_files` counts `PATH` itself, so 1 keeps no rotated files.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<LogWriter> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes,
            max_files,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Logs complete lines now and keeps the rest of a line until its newline arrives; a line
    /// longer than `MAX_LINE` is written in `P` parts as it comes.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: SystemTime) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.pending[stream.index()]);
        buf.extend_from_slice(data);
        let mut start = 0;
        let result = loop {
            let rest = &buf[start..];
            let step = if let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                self.write_line(stream, &rest[..newline], now)
                    .map(|()| newline + 1)
            } else if rest.len() > MAX_LINE {
                self.write_record(stream, true, &rest[..MAX_LINE], now)
                    .map(|()| MAX_LINE)
            } else {
                break Ok(());
            };
            match step {
                Ok(n) => start += n,
                Err(e) => break Err(e),
            }
        };
        buf.drain(..start);
        self.pending[stream.index()] = buf;
        result
    }

    /// Writes buffered unfinished lines as `P` parts, so readers see them: call it when the
    /// output pauses mid-line (a prompt) and when the container exits.
    pub fn flush_partial(&mut self, now: SystemTime) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = std::mem::take(&mut self.pending[stream.index()]);
            if !buf.is_empty() {
                self.write_record(stream, true, &buf, now)?;
            }
        }
        Ok(())
    }

    fn write_line(&mut self, stream: Stream, mut line: &[u8], now: SystemTime) -> io::Result<()> {
        while line.len() > MAX_LINE {
            self.write_record(stream, true, &line[..MAX_LINE], now)?;
            line = &line[MAX_LINE..];
        }
        self.write_record(stream, false, line, now)
    }

    fn write_record(
        &mut self,
        stream: Stream,
        partial: bool,
        content: &[u8],
        now: SystemTime,
    ) -> io::Result<()> {
        let tag = if partial { 'P' } else { 'F' };
        let time = humantime::format_rfc3339_nanos(now);
        let mut record = format!("{time} {} {tag} ", stream.as_str()).into_bytes();
        record.extend_from_slice(content);
        record.push(b'\n');
        let len = record.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        // One write per record, so a reader rarely sees half of one (and skips it if it does).
        self.file.write_all(&record)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let kept = self.max_files.saturating_sub(1);
        if kept == 0 {
            self.file.set_len(0)?;
        } else {
            ignore_missing(fs::remove_file(rotated(&self.path, kept)))?;
            for n in (1..kept).rev() {
                ignore_missing(fs::rename(
                    rotated(&self.path, n),
                    rotated(&self.path, n + 1),
                ))?;
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = open_append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `PATH.n`
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Where a reader stopped, and what `follow` needs to go on in the same way.
#[derive(Debug)]
pub struct ReadPosition {
    /// The file read last, by identity: rotation renames it.
    file: Option<FileId>,
    /// Just past the last complete record read in that file.
    offset: u64,
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// Reads everything logged at `path` and its rotated files, oldest first, applying `since`,
/// `tail_lines`, `timestamps` and `limit_bytes` like the kubelet. `P` parts are joined into one
/// line with the first part's timestamp; an unfinished last line is written without a newline.
/// Fails with `NotFound` when there is no log file at all.
pub fn read_logs(path: &Path, opts: &LogOptions, out: &mut dyn Write) -> io::Result<ReadPosition> {
    let files = open_all(path)?;
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no log file at {}", path.display()),
        ));
    }
    let mut pos = ReadPosition {
        file: None,
        offset: 0,
        output: Output {
            timestamps: opts.timestamps,
            remaining: opts.limit_bytes,
            mid_line: [false; 2],
        },
    };
    let mut assembler = Assembler::default();
    // With tailLines only the last lines are kept, then written at the end.
    let mut tail = opts.tail_lines.map(|n| (n, VecDeque::new()));
    let mut take = |line: Line, output: &mut Output| -> io::Result<bool> {
        if opts.since.is_some_and(|since| line.time < since) {
            return Ok(true);
        }
        match &mut tail {
            Some((n, lines)) => {
                lines.push_back(line);
                if lines.len() > *n {
                    lines.pop_front();
                }
                Ok(true)
            }
            None => output.line(out, &line),
        }
    };
    for log in &files {
        let (offset, go_on) = scan(&log.file, 0, &mut |record| match assembler.push(record) {
            Some(line) => take(line, &mut pos.output),
            None => Ok(true),
        })?;
        (pos.file, pos.offset) = (Some(log.id), offset);
        if !go_on {
            out.flush()?;
            return Ok(pos);
        }
    }
    for line in assembler.take_partials() {
        take(line, &mut pos.output)?;
    }
    if let Some((_, lines)) = tail {
        for line in &lines {
            if !pos.output.line(out, line)? {
                break;
            }
        }
    }
    out.flush()?;
    Ok(pos)
}

/// Goes on from `from`, writing new lines as they are logged (across rotations) and flushing
/// `out` after each batch, until `stop()` returns true or `limitBytes` is used up. `stop` is
/// checked before each look, so whatever was logged before it turned true is still written:
/// the caller makes it true once the container has exited (or the client has gone). Blocks;
/// run it on a streaming thread.
pub fn follow(
    path: &Path,
    mut from: ReadPosition,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    while !from.output.exhausted() {
        let stopping = stop();
        drain(path, &mut from, out)?;
        if stopping {
            break;
        }
        thread::sleep(POLL);
    }
    Ok(())
}

/// A Write that sends what it is given over a channel (to a streaming reply
/// or the cluster link).
struct ChunkWriter(smol::channel::Sender<Vec<u8>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send_blocking(buf.to_vec())
            .map_err(|_| io::ErrorKind::BrokenPipe)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `read_logs`, then `follow` if asked, on a thread of its own; the chunks
/// come over the channel, which closes at the end (or when its reader goes).
pub fn stream(
    path: PathBuf,
    opts: LogOptions,
    stop: impl Fn() -> bool + Send + 'static,
) -> io::Result<smol::channel::Receiver<Vec<u8>>> {
    let (tx, rx) = smol::channel::bounded(16);
    thread::Builder::new()
        .name("api-log-follow".into())
        .spawn(move || {
            let mut out = ChunkWriter(tx);
            if let Ok(pos) = read_logs(&path, &opts, &mut out)
                && opts.follow
            {
                let _ = follow(&path, pos, &mut out, &stop);
            }
        })?;
    Ok(rx)
}

/// Writes what was logged since `pos` and moves `pos` to the end.
fn drain(path: &Path, pos: &mut ReadPosition, out: &mut dyn Write) -> io::Result<()> {
    let files = open_all(path)?;
    // Files older than ours are done. When ours is gone (rotated away) every file left is newer;
    // one shorter than our offset was truncated (rotation without kept files) or is a new file
    // that reuses the inode, and is read from the start.
    let start = files
        .iter()
        .position(|log| Some(log.id) == pos.file && log.len >= pos.offset);
    let mut assembler = Assembler::default();
    let mut wrote = false;
    for (i, log) in files.iter().enumerate().skip(start.unwrap_or(0)) {
        let offset = if Some(i) == start { pos.offset } else { 0 };
        let (end, go_on) = scan(
            &log.file,
            offset,
            &mut |record| match assembler.push(record) {
                Some(line) => {
                    wrote = true;
                    pos.output.line(out, &line)
                }
                None => Ok(true),
            },
        )?;
        (pos.file, pos.offset) = (Some(log.id), end);
        if !go_on {
            return out.flush();
        }
    }
    // Show unfinished lines now; their rest follows without a second timestamp.
    for line in assembler.take_partials() {
        wrote = true;
        if !pos.output.line(out, &line)? {
            break;
        }
    }
    if wrote {
        out.flush()?;
    }
    Ok(())
}

struct LogFile {
    file: File,
    id: FileId,
    len: u64,
}

/// The log files that exist, oldest first: `PATH.n` .. `PATH.1`, `PATH`.
fn open_all(path: &Path) -> io::Result<Vec<LogFile>> {
    // Rotation numbers files from 1 without gaps, so the first missing number ends the list.
    let rotated_count = (1..).take_while(|&n| rotated(path, n).exists()).count();
    let paths = (1..=rotated_count).rev().map(|n| rotated(path, n));
    let mut files = Vec::new();
    for path in paths.chain([path.to_path_buf()]) {
        // A file can vanish between listing and opening while the writer rotates.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        files.push(LogFile {
            id: FileId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
            len: meta.len(),
            file,
        });
    }
    Ok(files)
}

/// One parsed CRI record.
#[derive(Clone, Copy)]
struct Record<'a> {
    time: SystemTime,
    stream: Stream,
    partial: bool,
    content: &'a [u8],
}

fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let time = humantime::parse_rfc3339_weak(time).ok()?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    // Tags are `:`-separated; the first says full or partial.
    let partial = fields.next()?.split(|&b| b == b':').next() == Some(b"P");
    Some(Record {
        time,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// Hands each complete record of `file` from `offset` on to `sink` until it returns false.
/// Returns the offset past the last record read and whether `sink` wants more. A last line
/// without its newline is still being written and is left for the next look.
fn scan(
    file: &File,
    offset: u64,
    sink: &mut dyn FnMut(Record<'_>) -> io::Result<bool>,
) -> io::Result<(u64, bool)> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut offset = offset;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if buf.pop() != Some(b'\n') {
            return Ok((offset, true));
        }
        offset += n as u64;
        match parse_record(&buf) {
            Some(record) => {
                if !sink(record)? {
                    return Ok((offset, false));
                }
            }
            None => log::debug!("skipping a malformed CRI log line at byte {offset}"),
        }
    }
}

/// A logical line: `P` parts joined.
struct Line {
    time: SystemTime,
    stream: Stream,
    text: Vec<u8>,
    /// False for an unfinished line (no newline is written after it).
    complete: bool,
}

/// Joins `P` parts per stream; stdout and stderr records interleave.
#[derive(Default)]
struct Assembler {
    pending: [Option<(SystemTime, Vec<u8>)>; 2],
}

impl Assembler {
    fn push(&mut self, record: Record<'_>) -> Option<Line> {
        let slot = &mut self.pending[record.stream.index()];
        let (time, mut text) = slot.take().unwrap_or((record.time, Vec::new()));
        text.extend_from_slice(record.content);
        if record.partial && text.len() < MAX_JOINED {
            *slot = Some((time, text));
            return None;
        }
        Some(Line {
            time,
            stream: record.stream,
            text,
            complete: !record.partial,
        })
    }

    fn take_partials(&mut self) -> impl Iterator<Item = Line> + '_ {
        [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let (time, text) = self.pending[stream.index()].take()?;
                Some(Line {
                    time,
                    stream,
                    text,
                    complete: false,
                })
            })
    }
}

/// Formats lines for the client and counts `limitBytes`.
#[derive(Debug)]
struct Output {
    timestamps: bool,
    remaining: Option<usize>,
    /// Per stream: an unfinished line was written, so its rest gets no timestamp.
    mid_line: [bool; 2],
}

impl Output {
    /// Writes one line, cut short at the byte limit (timestamps count, as in the kubelet);
    /// false once the limit is used up.
    fn line(&mut self, out: &mut dyn Write, line: &Line) -> io::Result<bool> {
        let mut buf = Vec::with_capacity(line.text.len() + 32);
        let mid_line = &mut self.mid_line[line.stream.index()];
        if self.timestamps && !*mid_line {
            let time = humantime::format_rfc3339_nanos(line.time);
            buf.extend_from_slice(format!("{time} ").as_bytes());
        }
        buf.extend_from_slice(&line.text);
        if line.complete {
            buf.push(b'\n');
        }
        *mid_line = !line.complete;
        if let Some(remaining) = &mut self.remaining {
            buf.truncate(*remaining);
            *remaining -= buf.len();
        }
        out.write_all(&buf)?;
        Ok(!self.exhausted())
    }

    fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn at(secs: u64) -> SystemTime {
        humantime::parse_rfc3339("2026-11-26T14:27:45.123456789Z").unwrap()
            + Duration::from_secs(secs)
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("bramble-logs-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn log(&self) -> PathBuf {
            self.0.join("0.log")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes `lines` one per second from `at(0)`, on stdout.
    fn write_lines(path: &Path, lines: &[&str]) {
        let mut w = LogWriter::open(path, 1 << 20, 5).unwrap();
        for (i, line) in lines.iter().enumerate() {
            w.write(Stream::Stdout, format!("{line}\n").as_bytes(), at(i as u64))
                .unwrap();
        }
    }

    fn read(path: &Path, opts: &LogOptions) -> String {
        let mut out = Vec::new();
        read_logs(path, opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn query(pairs: &[(&str, &str)]) -> Result<LogOptions, String> {
        let params: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogOptions::from_query(&params, at(100))
    }

    #[test]
    fn parses_query() {
        let opts = query(&[
            ("container", "web"),
            ("follow", "true"),
            ("tailLines", "10"),
            ("sinceSeconds", "30"),
            ("timestamps", "true"),
            ("limitBytes", "500"),
        ])
        .unwrap();
        let want = LogOptions {
            follow: true,
            tail_lines: Some(10),
            since: Some(at(70)),
            timestamps: true,
            limit_bytes: Some(500),
        };
        assert_eq!(opts, want);
        let opts = query(&[("sinceTime", "2026-11-26T14:27:50Z"), ("follow", "false")]).unwrap();
        assert_eq!(
            opts.since,
            Some(humantime::parse_rfc3339("2026-11-26T14:27:50Z").unwrap())
        );
        assert!(!opts.follow);
        assert!(
            query(&[("tailLines", "-1")])
                .unwrap_err()
                .contains("tailLines")
        );
        assert!(query(&[("limitBytes", "0")]).is_err());
        assert!(query(&[("sinceSeconds", "x")]).is_err());
        assert!(query(&[("sinceTime", "yesterday")]).is_err());
        assert!(query(&[("sinceSeconds", "5"), ("sinceTime", "2026-11-26T14:27:50Z")]).is_err());
    }

    #[test]
    fn writes_cri_records_and_reads_them_back() {
        let dir = TempDir::new("basic");
        let mut w = LogWriter::open(&dir.log(), 1 << 20, 5).unwrap();
        w.write(Stream::Stdout, b"hello\nwor", at(0)).unwrap();
        w.write(Stream::Stderr, b"oops\n", at(1)).unwrap();
        w.write(Stream::Stdout, b"ld\n\n", at(2)).unwrap();
        let file = fs::read_to_string(dir.log()).unwrap();
        assert_eq!(
            file,
            "2026-11-26T14:27:45.123456789Z stdout F hello\n\
             2026-11-26T14:27:46.123456789Z stderr F oops\n\
             2026-11-26T14:27:47.123456789Z stdout F world\n\
             2026-11-26T14:27:47.123456789Z stdout F \n"
        );
        assert_eq!(
            read(&dir.log(), &LogOptions::default()),
            "hello\noops\nworld\n\n"
        );
        let opts = LogOptions {
            timestamps: true,
            ..LogOptions::default()
        };
        assert!(read(&dir.log(), &opts).starts_with(
            "2026-11-26T14:27:45.123456789Z hello\n2026-11-26T14:27:46.123456789Z oops\n"
        ));
        let missing = read_logs(&dir.0.join("none.log"), &opts, &mut Vec::new());
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn tail_since_and_limit() {
        let dir = TempDir::new("filters");
        write_lines(&dir.log(), &["zero", "one", "two", "three", "four"]);
        let tail = |n| LogOptions {
            tail_lines: Some(n),
            ..LogOptions::default()
        };
        assert_eq!(read(&dir.log(), &tail(2)), "three\nfour\n");
        assert_eq!(read(&dir.log(), &tail(0)), "");
        assert_eq!(read(&dir.log(), &tail(9)), "zero\none\ntwo\nthree\nfour\n");
        let since = LogOptions {
            since: Some(at(3)),
            ..LogOptions::default()
        };
        assert_eq!(read(&dir.log(), &since), "three\nfour\n");
        // The limit cuts mid-line, like the kubelet.
        let limit = LogOptions {
            limit_bytes: Some(7),
            ..LogOptions::default()
        };
        assert_eq!(read(&dir.log(), &limit), "zero\non");
        let both = LogOptions {
            limit_bytes: Some(33),
            timestamps: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(read(&dir.log(), &both), "2026-11-26T14:27:49.123456789Z fo");
    }

    #[test]
    fn joins_partial_records() {
        let dir = TempDir::new("partial");
        let mut w = LogWriter::open(&dir.log(), 1 << 20, 5).unwrap();
        w.write(Stream::Stdout, b"abc", at(0)).unwrap();
        w.flush_partial(at(1)).unwrap();
        w.write(Stream::Stderr, b"x\n", at(2)).unwrap();
        w.write(Stream::Stdout, b"def\n", at(3)).unwrap();
        let long = "y".repeat(MAX_LINE * 2 + 10);
        w.write(Stream::Stdout, long.as_bytes(), at(4)).unwrap();
        w.write(Stream::Stdout, b"\n", at(5)).unwrap();
        w.write(Stream::Stdout, b"prompt$ ", at(6)).unwrap();
        w.flush_partial(at(6)).unwrap();

        let file = fs::read_to_string(dir.log()).unwrap();
        let tags: Vec<&str> = file.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "F", "F", "P", "P", "F", "P"]);
        assert_eq!(
            read(&dir.log(), &LogOptions::default()),
            format!("x\nabcdef\n{long}\nprompt$ ")
        );
        // A joined line carries its first part's time: "abc" was logged by the flush at(1).
        let opts = LogOptions {
            timestamps: true,
            tail_lines: Some(3),
            ..LogOptions::default()
        };
        assert!(read(&dir.log(), &opts).starts_with("2026-11-26T14:27:46.123456789Z abcdef\n"));
    }

    #[test]
    fn rotation_keeps_n_files_and_reads_span_them() {
        let dir = TempDir::new("rotate");
        let mut w = LogWriter::open(&dir.log(), 200, 3).unwrap();
        let lines: Vec<String> = (0..30).map(|i| format!("line {i:02}")).collect();
        for line in &lines {
            w.write(Stream::Stdout, format!("{line}\n").as_bytes(), at(0))
                .unwrap();
        }
        assert!(rotated(&dir.log(), 2).exists());
        assert!(!rotated(&dir.log(), 3).exists());
        for path in [dir.log(), rotated(&dir.log(), 1), rotated(&dir.log(), 2)] {
            assert!(fs::metadata(path).unwrap().len() <= 200);
        }
        // 48-byte records, four to a file: PATH.2 and PATH.1 hold four each, PATH the last two.
        let all = read(&dir.log(), &LogOptions::default());
        assert_eq!(all, lines[20..].join("\n") + "\n");
        let tail = LogOptions {
            tail_lines: Some(5),
            ..LogOptions::default()
        };
        assert_eq!(read(&dir.log(), &tail), lines[25..].join("\n") + "\n");
    }

    #[test]
    fn follow_sees_appends_and_rotation() {
        let dir = TempDir::new("follow");
        let path = dir.log();
        let mut w = LogWriter::open(&path, 300, 3).unwrap();
        w.write(Stream::Stdout, b"before\n", at(0)).unwrap();
        let mut first = Vec::new();
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let pos = read_logs(&path, &opts, &mut first).unwrap();
        assert_eq!(first, b"before\n");

        let done = Arc::new(AtomicBool::new(false));
        let follower = {
            let (path, done) = (path.clone(), done.clone());
            thread::spawn(move || {
                let mut out = Vec::new();
                follow(&path, pos, &mut out, &|| done.load(Ordering::SeqCst)).unwrap();
                String::from_utf8(out).unwrap()
            })
        };
        let mut expected = String::new();
        for i in 0..12 {
            let line = format!("after {i}\n");
            w.write(Stream::Stdout, line.as_bytes(), at(i)).unwrap();
            expected.push_str(&line);
            // Some lines land between looks, some after a rotation the follower has not seen.
            if i % 4 == 0 {
                thread::sleep(POLL + Duration::from_millis(50));
            }
        }
        assert!(rotated(&path, 1).exists(), "the test must rotate");
        w.write(Stream::Stdout, b"half", at(20)).unwrap();
        w.flush_partial(at(20)).unwrap();
        expected.push_str("half");
        done.store(true, Ordering::SeqCst);
        assert_eq!(follower.join().unwrap(), expected);
    }
}
