//! Container logs: one JSON object per line (`{"time","stream","log"}`, as Docker's json-file
//! driver), written by the shim, read by `berth logs`.
//!
//! The one thing to know: the file is capped. When `container.log` reaches `max_size` it is
//! renamed to `container.log.1` (older files shift to `.2`, …, the oldest beyond `max_files`
//! is deleted), as Docker's json-file driver does. Readers read `.N` … `.1` then the current
//! file; a follower notices a rotation by the current file's inode changing.
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const LOG_FILE: &str = "container.log";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub time: String,
    pub stream: String,
    pub log: String,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// How much log a container may keep: `max_files` files of at most `max_size` bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLimits {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogLimits {
    /// 10 MiB x 3 files: a chatty container never holds more than 30 MiB of disk.
    fn default() -> Self {
        LogLimits {
            max_size: 10 << 20,
            max_files: 3,
        }
    }
}

impl LogLimits {
    /// From compose `logging.options` (`max-size: 10m`, `max-file: "3"`), Docker's units.
    pub fn from_options(
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<LogLimits, String> {
        let mut l = LogLimits::default();
        if let Some(s) = options.get("max-size") {
            l.max_size = parse_size(s).ok_or_else(|| {
                format!("logging max-size: invalid size {s:?} (use e.g. 500k, 10m, 1g)")
            })?;
        }
        if let Some(s) = options.get("max-file") {
            l.max_files = s
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("logging max-file: {s:?} is not a number >= 1"))?;
        }
        Ok(l)
    }
}

/// `1024`, `500k`, `10m`, `1g` (binary units, case-insensitive, optional trailing `b`).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

/// The files of a log, oldest first: `container.log.N` … `container.log.1`, `container.log`.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    out.push(path.to_path_buf());
    out
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The log file as the shim appends to it: each `write` is one whole record, and the file is
/// rotated before a record that would start past `max_size`.
pub struct LogFile {
    path: PathBuf,
    limits: LogLimits,
    file: File,
    size: u64,
}

impl LogFile {
    pub fn open(path: &Path, limits: LogLimits) -> std::io::Result<LogFile> {
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            limits,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.limits.max_files.max(1) - 1;
        if keep == 0 {
            // No rotated files: start over in a new file (a new inode, so followers notice).
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, keep));
            for i in (1..keep).rev() {
                let _ = std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = File::options().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.limits.max_size {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Splits a stream into lines and appends each as a record. Partial lines wait for the rest.
pub struct LineWriter {
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineWriter {
    pub fn new(stream: &'static str) -> LineWriter {
        LineWriter {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        self.pending.extend_from_slice(data);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            self.write(&line, out)?;
        }
        // A very long line without a newline is cut, as Docker does at 16 KiB.
        if self.pending.len() >= 16 * 1024 {
            let line = std::mem::take(&mut self.pending);
            self.write(&line, out)?;
        }
        Ok(())
    }

    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.write(&line, out)?;
        }
        Ok(())
    }

    fn write(&self, line: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        let rec = Record {
            time: now(),
            stream: self.stream.into(),
            log: String::from_utf8_lossy(line).into_owned(),
        };
        let mut buf = serde_json::to_vec(&rec)?;
        buf.push(b'\n');
        // One write call per record: `LogFile` rotates only between records.
        out.write(&buf).map(|_| ())
    }
}

/// Reads the records of a log file from byte `offset`; returns them and the offset after the
/// last complete line (a line still being written is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    read_file(f, offset)
}

fn read_file(mut f: File, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut out = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(rec) = serde_json::from_str::<Record>(&line) {
            out.push(rec);
        }
    }
    Ok((out, pos))
}

/// Follows a log across rotations: `poll` returns what was appended since the last call.
#[derive(Debug, Default)]
pub struct Follower {
    /// The inode and offset of the file being read.
    at: Option<(u64, u64)>,
}

impl Follower {
    /// Reads the whole log, rotated files included, oldest first, and a follower that
    /// continues right after it.
    pub fn start(path: &Path) -> std::io::Result<(Vec<Record>, Follower)> {
        let mut out = Vec::new();
        let all = files(path);
        for p in &all[..all.len() - 1] {
            out.extend(read_from(p, 0)?.0);
        }
        let mut f = Follower::default();
        out.extend(f.poll(path)?);
        Ok((out, f))
    }

    pub fn poll(&mut self, path: &Path) -> std::io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let current = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        let ino = current.metadata()?.ino();
        match self.at {
            Some((old, off)) if old != ino => {
                // Rotated: finish the file we were reading, wherever it went, then the files
                // rotated after it (several rotations may happen between two polls).
                let all = files(path);
                let mut found = false;
                for p in &all[..all.len() - 1] {
                    let Ok(f) = File::open(p) else { continue };
                    if found {
                        out.extend(read_file(f, 0)?.0);
                    } else if f.metadata().is_ok_and(|m| m.ino() == old) {
                        out.extend(read_file(f, off)?.0);
                        found = true;
                    }
                }
                let (recs, end) = read_file(current, 0)?;
                out.extend(recs);
                self.at = Some((ino, end));
            }
            at => {
                let off = at.map_or(0, |(_, o)| o);
                let (recs, end) = read_file(current, off)?;
                out.extend(recs);
                self.at = Some((ino, end));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(recs: &[Record]) -> Vec<&str> {
        recs.iter().map(|r| r.log.as_str()).collect()
    }

    #[test]
    fn lines_are_split_and_partial_lines_wait() {
        let mut w = LineWriter::new("stdout");
        let mut out = Vec::new();
        w.feed(b"a\nb", &mut out).unwrap();
        w.feed(b"c\n", &mut out).unwrap();
        w.feed(b"tail", &mut out).unwrap();
        w.finish(&mut out).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        std::fs::write(&p, &out).unwrap();
        let (recs, off) = read_from(&p, 0).unwrap();
        assert_eq!(logs(&recs), ["a\n", "bc\n", "tail"]);
        assert_eq!(off, out.len() as u64);
    }

    #[test]
    fn a_follower_reads_every_file_of_several_rotations_between_polls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container.log");
        let line =
            |s: &str| format!("{{\"time\":\"t\",\"stream\":\"stdout\",\"log\":\"{s}\\n\"}}\n");
        std::fs::write(&p, line("a")).unwrap();
        let (first, mut f) = Follower::start(&p).unwrap();
        assert_eq!(logs(&first), ["a\n"]);
        // Two rotations before the next poll: a's file is now .2, b's .1.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(line("a2").as_bytes())
            .unwrap();
        std::fs::rename(&p, rotated(&p, 1)).unwrap();
        std::fs::write(&p, line("b")).unwrap();
        std::fs::rename(rotated(&p, 1), rotated(&p, 2)).unwrap();
        std::fs::rename(&p, rotated(&p, 1)).unwrap();
        std::fs::write(&p, line("c")).unwrap();
        assert_eq!(logs(&f.poll(&p).unwrap()), ["a2\n", "b\n", "c\n"]);
    }

    #[test]
    fn sizes_use_docker_units() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("500K"), Some(500 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2048"), Some(2048));
        assert_eq!(parse_size("1.5kb"), Some(1536));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("0"), None);
        let opts = [("max-size".to_string(), "1k".to_string())].into();
        assert_eq!(LogLimits::from_options(&opts).unwrap().max_size, 1024);
        let opts = [("max-file".to_string(), "0".to_string())].into();
        assert!(LogLimits::from_options(&opts).is_err());
    }

    #[test]
    fn rotation_caps_the_disk_and_readers_see_the_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LOG_FILE);
        let limits = LogLimits {
            max_size: 300,
            max_files: 3,
        };
        let mut log = LogFile::open(&p, limits).unwrap();
        let mut w = LineWriter::new("stdout");
        let (mut followed, mut follower) = Follower::start(&p).unwrap();
        for i in 0..100 {
            w.feed(format!("line {i}\n").as_bytes(), &mut log).unwrap();
            if i % 2 == 0 {
                followed.extend(follower.poll(&p).unwrap());
            }
        }
        followed.extend(follower.poll(&p).unwrap());
        let all = files(&p);
        assert_eq!(all.len(), 3, "{all:?}");
        for f in &all {
            assert!(std::fs::metadata(f).unwrap().len() <= 300);
        }
        let kept = Follower::start(&p).unwrap().0;
        let n: Vec<usize> = kept
            .iter()
            .map(|r| r.log.trim().strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
        assert_eq!(*n.last().unwrap(), 99);
        // Polled often enough, the follower saw every line exactly once across rotations.
        assert_eq!(followed.len(), 100);
        assert!(
            followed
                .iter()
                .enumerate()
                .all(|(i, r)| r.log == format!("line {i}\n"))
        );
    }

    #[test]
    fn a_single_file_log_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LOG_FILE);
        let limits = LogLimits {
            max_size: 100,
            max_files: 1,
        };
        let mut log = LogFile::open(&p, limits).unwrap();
        let mut w = LineWriter::new("stderr");
        for i in 0..20 {
            w.feed(format!("{i}\n").as_bytes(), &mut log).unwrap();
        }
        assert_eq!(files(&p).len(), 1);
        assert!(std::fs::metadata(&p).unwrap().len() <= 100);
        assert_eq!(Follower::start(&p).unwrap().0.last().unwrap().log, "19\n");
    }
}
