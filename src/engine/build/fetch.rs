//! ADD from a URL: a minimal HTTP/1.0 client (no TLS yet), bounded in size and time.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const MAX: u64 = 1 << 30;

pub fn get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            "https URLs are not supported by berth's builder: download the file into the \
                 build context (curl -fLO URL) and COPY it, or use RUN with a download tool"
                .to_string()
        } else {
            "only http:// URLs can be added".to_string()
        }
    })?;
    let (host, path) = match rest.find('/') {
        Some(n) => (&rest[..n], &rest[n..]),
        None => (rest, "/"),
    };
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {host}: no address"))?;
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: berth\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.take(MAX)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("bad response: {status}"));
    }
    Ok(buf[end + 4..].to_vec())
}
