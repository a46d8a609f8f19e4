//! docker compose's navigation menu of attached `up` on a terminal: a last line
//! `w Enable Watch   d Detach` kept below the containers' output, and single keys read from
//! the terminal without Enter. `d` detaches (the CLI exits and the containers run on under
//! their shims); `w` would toggle watch, which berth does not implement, so it says so (as
//! docker compose does when no service has `develop.watch`); Enter draws the menu again.
//! Docker Desktop's keys (`v`, `o`, `l`) have nothing to open here and are left out, as
//! docker compose leaves them out without Docker Desktop.
//!
//! The one decision to know: the terminal only loses line buffering and echo (`ICANON`,
//! `ECHO`); signals (`ISIG`: ^C, ^Z) and output processing stay, so Ctrl-C still stops the
//! project gracefully through the usual SIGINT and the log lines keep their line ends. The
//! previous settings come back when the menu is dropped, before anything else is printed.
use super::output;
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use std::io::{IsTerminal, Read};
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// What a key asks `up` to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Detach,
}

pub struct Menu {
    saved: Termios,
    keys: Receiver<u8>,
    /// Some service has `develop.watch`.
    watch_configured: bool,
    color: bool,
    drawn: bool,
}

/// Whether attached `up` shows the menu, as docker compose decides: stdin and stdout are
/// terminals, the progress is not `plain`, and `--menu` (else `COMPOSE_MENU`, else on) says so.
pub fn wanted(flag: Option<bool>, progress: &str) -> bool {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() || progress == "plain" {
        return false;
    }
    flag.unwrap_or_else(|| {
        std::env::var("COMPOSE_MENU").map_or(true, |v| crate::project::up::truthy(Some(&v)))
    })
}

impl Menu {
    /// Takes the terminal's keys; `None` (and a warning, as docker compose) if it cannot.
    pub fn start(watch_configured: bool, color: bool) -> Option<Menu> {
        let stdin = std::io::stdin();
        let saved = match termios::tcgetattr(&stdin) {
            Ok(t) => t,
            Err(e) => {
                output::note(&format!(
                    "warning: could not start menu, an error occurred while starting: {e}"
                ));
                return None;
            }
        };
        let mut keys_mode = saved.clone();
        keys_mode
            .local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        keys_mode.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        keys_mode.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        if let Err(e) = termios::tcsetattr(&stdin, SetArg::TCSANOW, &keys_mode) {
            output::note(&format!(
                "warning: could not start menu, an error occurred while starting: {e}"
            ));
            return None;
        }
        let (tx, keys) = channel();
        // Blocks in read(2) until a key; it ends with the process (or at the end of input).
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut b = [0u8; 1];
            while let Ok(1) = stdin.read(&mut b) {
                if tx.send(b[0]).is_err() {
                    break;
                }
            }
        });
        Some(Menu {
            saved,
            keys,
            watch_configured,
            color,
            drawn: false,
        })
    }

    fn text(&self) -> String {
        let key = |k: &str| {
            console::Style::new()
                .black()
                .on_white()
                .bold()
                .force_styling(self.color)
                .apply_to(k.to_string())
                .to_string()
        };
        let label = |l: &str| {
            console::Style::new()
                .dim()
                .force_styling(self.color)
                .apply_to(l.to_string())
                .to_string()
        };
        format!(
            "{}{}   {}{}",
            key("w"),
            label(" Enable Watch"),
            key("d"),
            label(" Detach")
        )
    }

    /// Draws the menu as the terminal's last line (after the output so far).
    pub fn draw(&mut self) {
        output::menu_line(Some(&self.text()));
        self.drawn = true;
    }

    /// Takes the menu line away, so that output can be printed in its place.
    pub fn clear(&mut self) {
        if self.drawn {
            output::menu_line(None);
            self.drawn = false;
        }
    }

    /// The keys typed since the last look: the menu's own (`w`, Enter) are handled here,
    /// the others returned.
    pub fn poll(&mut self) -> Option<Action> {
        loop {
            let key = match self.keys.try_recv() {
                Ok(k) => k,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            };
            match key {
                b'd' => {
                    self.clear();
                    return Some(Action::Detach);
                }
                b'w' => self.toggle_watch(),
                b'\r' | b'\n' => {
                    self.clear();
                    self.draw();
                }
                _ => {}
            }
        }
    }

    fn toggle_watch(&mut self) {
        let message = if self.watch_configured {
            // berth has no file watcher: the services' `develop.watch` cannot be acted on.
            "watch is not available in berth: develop.watch is not acted on"
        } else {
            "watch is not yet configured. Learn more: https://docs.docker.com/compose/file-watch/"
        };
        let prefix = console::Style::new()
            .cyan()
            .bold()
            .force_styling(self.color)
            .apply_to("Watch →");
        self.clear();
        output::data(&format!("{prefix}  {message}"));
        self.draw();
    }
}

impl Drop for Menu {
    fn drop(&mut self) {
        self.clear();
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}
