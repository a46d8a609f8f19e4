//! Command line: arguments, settings, one file per command.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
