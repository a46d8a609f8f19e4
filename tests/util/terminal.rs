//! A terminal for berth: a pty the test opens, made berth's controlling terminal by
//! `setsid -c` (so resizing it sends berth `SIGWINCH`, and ^C typed on it `SIGINT`).
use super::Env;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// berth running on a terminal of the test's.
pub struct Terminal {
    master: std::fs::File,
    slave_path: std::path::PathBuf,
    output: Receiver<Vec<u8>>,
    seen: String,
    child: Child,
}

impl Terminal {
    pub fn start(env: &Env, args: &[&str], size: (u16, u16)) -> Terminal {
        Terminal::start_with(env, args, size, &[])
    }

    /// As [`Terminal::start`], with these environment variables set for berth.
    pub fn start_with(
        env: &Env,
        args: &[&str],
        (rows, cols): (u16, u16),
        vars: &[(&str, &str)],
    ) -> Terminal {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave_path =
            std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let child = Command::new("setsid")
            .args(["-w", "-c", super::BERTH])
            .args(args)
            .current_dir(&env.dir)
            .env("BERTH_ROOT", env.root())
            .env("BERTH_SUBNET_POOL", &env.pool)
            .envs(vars.iter().copied())
            .stdin(stdio(&pty.slave))
            .stdout(stdio(&pty.slave))
            .stderr(stdio(&pty.slave))
            .spawn()
            .unwrap();
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every holder of the slave is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            master,
            slave_path,
            output,
            seen: String::new(),
            child,
        }
    }

    /// Waits (20 s) until the terminal has shown `want`.
    pub fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("the terminal never showed {want:?}:\n{}", self.seen);
                }
            }
        }
    }

    /// What the terminal has shown so far (as far as [`Terminal::expect`] read it).
    pub fn seen(&self) -> &str {
        &self.seen
    }

    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Resizes the terminal (the kernel signals its foreground process group).
    pub fn resize(&self, rows: u16, cols: u16) {
        let out = Command::new("stty")
            .arg("-F")
            .arg(&self.slave_path)
            .args(["rows", &rows.to_string(), "cols", &cols.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", super::text(&out.stderr));
    }

    /// Waits (30 s) for berth to exit; returns its exit code and everything the terminal showed.
    pub fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("berth did not exit:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(b) = self.output.recv_timeout(Duration::from_millis(300)) {
            self.seen.push_str(&String::from_utf8_lossy(&b));
        }
        (status.code(), self.seen)
    }
}

pub fn have_tools() -> bool {
    let ok = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !ok("setsid") || !ok("stty") {
        eprintln!("SKIPPED: no setsid(1) or stty(1) (apt-get install util-linux coreutils)");
        return false;
    }
    true
}
