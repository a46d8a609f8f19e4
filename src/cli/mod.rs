//! Command line: arguments, settings, one file per command.
pub mod config;
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
