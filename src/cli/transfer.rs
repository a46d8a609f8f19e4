//! Progress of pulls and pushes: a bar per blob on a terminal, plain lines otherwise
//! (`--progress plain`, `NO_COLOR`, or stderr not a TTY), nothing with `-q`.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::registry::{BlobEvent, Progress};

pub enum Reporter {
    Quiet,
    Plain,
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
}

impl Reporter {
    /// Bars when stderr is a terminal and `plain` was not asked for.
    pub fn new(quiet: bool, plain: bool) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else if plain || !console::Term::stderr().is_term() {
            Reporter::Plain
        } else {
            Reporter::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        }
    }

    pub fn note(&self, line: &str) {
        match self {
            Reporter::Quiet => {}
            Reporter::Plain => eprintln!("{line}"),
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
        }
    }
}

fn status(event: BlobEvent) -> Option<&'static str> {
    Some(match event {
        BlobEvent::Exists => "Already exists",
        BlobEvent::Mounted => "Mounted from another repository",
        BlobEvent::Complete => "Transfer complete",
        BlobEvent::Extracting => "Extracting",
        BlobEvent::Extracted => "Pull complete",
        BlobEvent::Transfer { done: 0, .. } => "Transferring",
        BlobEvent::Transfer { .. } => return None,
    })
}

impl Progress for Reporter {
    fn blob(&self, id: &str, event: BlobEvent) {
        match self {
            Reporter::Quiet => {}
            Reporter::Plain => {
                if let Some(s) = status(event) {
                    eprintln!("{id}: {s}");
                }
            }
            Reporter::Bars { multi, bars } => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                let bar = bars.entry(id.to_owned()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix}: {wide_msg} {bytes:>10}/{total_bytes:<10} {bar:30}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(id.to_owned());
                    bar
                });
                match event {
                    BlobEvent::Transfer { done, total } => {
                        bar.set_length(total);
                        bar.set_position(done);
                        bar.set_message("Transferring");
                    }
                    BlobEvent::Extracted | BlobEvent::Exists | BlobEvent::Mounted => {
                        bar.finish_with_message(status(event).unwrap_or_default());
                    }
                    other => bar.set_message(status(other).unwrap_or_default()),
                }
            }
        }
    }

    fn message(&self, line: &str) {
        self.note(line);
    }
}
