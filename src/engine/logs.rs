//! Container logs: one JSON object per line (`{"time","stream","log"}`, as Docker's json-file
//! driver), written by the shim, read by `berth logs`.
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

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
        out.write_all(&buf)
    }
}

/// Reads the records of a log file from byte `offset`; returns them and the offset after the
/// last complete line (a line still being written is left for the next read).
pub fn read_from(path: &Path, offset: u64) -> std::io::Result<(Vec<Record>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let logs: Vec<&str> = recs.iter().map(|r| r.log.as_str()).collect();
        assert_eq!(logs, ["a\n", "bc\n", "tail"]);
        assert_eq!(off, out.len() as u64);
    }
}
