//! Command line: arguments, settings, one file per command family.
//!
//! Parsing is two-staged as in ripgrep: clap turns argv into `Cli`, then each command builds
//! the settings it needs (paths, compose load options). stdout carries data only; progress,
//! logs of berth itself and errors go to stderr through `output`.
mod attach;
mod build;
pub mod config;
mod events;
mod format;
mod images;
mod inspect;
mod lifecycle;
mod logs;
mod menu;
mod network;
mod output;
mod project;
mod transfer;
mod volume;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Compose-file driven containers, no daemon",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args, Clone)]
pub struct Global {
    /// State root (default /var/lib/berth and /run/berth).
    #[arg(long, global = true, env = "BERTH_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Compose configuration files.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name.
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the folder of the first compose file).
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (replace the project's `.env`).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Profiles to enable.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Set type of progress output (auto, tty, plain, json, quiet).
    #[arg(long, global = true, env = "COMPOSE_PROGRESS", default_value = "auto", value_parser = ["auto", "tty", "plain", "json", "quiet"])]
    pub progress: String,
    /// Control when to print ANSI control characters ("never"|"always"|"auto").
    #[arg(long, global = true, env = "COMPOSE_ANSI", default_value = "auto", value_parser = ["never", "always", "auto"])]
    pub ansi: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start containers.
    Up(project::UpArgs),
    /// Creates containers for a service.
    Create(project::CreateArgs),
    /// Scale services.
    Scale(project::ScaleArgs),
    /// Receive real time events from containers.
    Events(events::EventsArgs),
    /// Stop and remove containers and networks.
    Down(project::DownArgs),
    /// List containers.
    Ps(project::PsArgs),
    /// View output from containers.
    Logs(logs::LogsArgs),
    /// Parse, resolve and render the compose file in canonical format.
    Config(config::ConfigArgs),
    /// List running compose projects.
    Ls(project::LsArgs),
    /// Block until the first service container stops.
    Wait(project::WaitArgs),
    /// Run a one-off command on a service (or, outside a project, an image).
    Run(project::RunArgs),
    /// Execute a command in a running container.
    Exec(project::ExecArgs),
    /// Stop services.
    Stop(lifecycle::StopArgs),
    /// Start services.
    Start(lifecycle::ServicesArgs),
    /// Restart service containers.
    Restart(lifecycle::StopArgs),
    /// Force stop service containers.
    Kill(lifecycle::KillArgs),
    /// Removes stopped service containers.
    Rm(lifecycle::RmArgs),
    /// Pause services.
    Pause(lifecycle::ServicesArgs),
    /// Unpause services.
    Unpause(lifecycle::ServicesArgs),
    /// Display the running processes.
    Top(lifecycle::ServicesArgs),
    /// Copy files/folders between a service container and the local filesystem.
    Cp(lifecycle::CpArgs),
    /// Display detailed information on the project's containers (JSON).
    Inspect(lifecycle::InspectArgs),
    /// Print the public address of a port of a service.
    Port(network::PortArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// List volumes of the project.
    Volumes(volume::VolumesArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Load an image from a tar archive or STDIN.
    Load(images::LoadArgs),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Download images from a registry.
    Pull(images::PullArgs),
    /// Upload an image to a registry.
    Push(images::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(images::TagArgs),
    /// Log in to a registry.
    Login(images::LoginArgs),
    /// Log out from a registry.
    Logout(images::LogoutArgs),
    /// Remove one or more images.
    Rmi(images::RmArgs),
    /// Save images to a tar archive (STDOUT by default).
    Save(images::SaveArgs),
    /// Create an image from a rootfs tarball.
    Import(images::ImportArgs),
    /// Create a new image from a container's changes.
    Commit(images::CommitArgs),
    /// Manage berth: disk usage.
    #[command(subcommand)]
    System(images::SystemCommand),
    /// Show the berth version information.
    Version,
    /// Runs a container's shim (internal).
    #[command(name = "__shim", hide = true)]
    Shim {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        run: PathBuf,
        id: String,
    },
    /// Removes an exited container that asked for it (`run -d --rm`; internal).
    #[command(name = "__autoremove", hide = true)]
    AutoRemove {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        run: PathBuf,
        id: String,
    },
}

/// Options that take a value, so `compose` is found as the first positional word.
const VALUE_OPTIONS: [&str; 10] = [
    "--root",
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--env-file",
    "--profile",
    "--progress",
    "--ansi",
];

/// Whether the command was given as `berth compose <cmd>`. Only `images` differs, as docker's
/// does: `docker images` lists the image store, `docker compose images` a project's images.
static VIA_COMPOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where the first positional word of `args` (the command) is.
fn command_index(args: &[String]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if VALUE_OPTIONS.contains(&a.as_str()) {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

/// The first positional word of `args`: the command.
fn command_word(args: &[String]) -> Option<&str> {
    command_index(args).map(|i| args[i].as_str())
}

/// `berth compose <cmd>` is `berth <cmd>`: drop the first positional `compose`.
fn strip_compose(mut args: Vec<String>) -> Vec<String> {
    if let Some(i) = command_index(&args)
        && args[i] == "compose"
    {
        args.remove(i);
        VIA_COMPOSE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    args
}

pub fn main() -> ExitCode {
    crate::sys::timing::mark("cli main");
    let args = strip_compose(std::env::args().collect());
    // A container's shim, started by berth itself with exactly these arguments, skips clap's
    // building of the whole command tree (about a millisecond per container).
    if let [_, cmd, data_flag, data, run_flag, run, id] = args.as_slice()
        && cmd == "__shim"
        && data_flag == "--data"
        && run_flag == "--run"
        && !id.starts_with('-')
    {
        output::init_tracing();
        if let Err(e) = crate::sys::exeseal::ensure_sealed() {
            tracing::warn!("cannot protect /proc/self/exe with a read-only mount: {e}");
        }
        let paths = crate::state::Paths {
            data: data.into(),
            run: run.into(),
        };
        let code = crate::engine::shim::main(&paths, id);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // Commands that move processes into cgroups start the kernel's wait for that at once,
    // before even parsing (see `engine::cgroups`).
    if matches!(
        command_word(&args),
        Some("up" | "run" | "start" | "restart" | "exec")
    ) {
        crate::engine::cgroups::warm();
    }
    let cli = parse(args);
    output::init_tracing();
    output::set_mode(&cli.global.progress, &cli.global.ansi);
    crate::sys::timing::mark("cli parsed");
    let result = run(cli);
    output::finish();
    crate::sys::timing::mark("cli end");
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            1
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// `args` as a `Cli`. clap's derive builds the arguments of every command before it parses
/// (about a millisecond, on each start). The commands a CI job or a container start runs
/// most are first parsed against a tree holding only the one named; what does not parse there
/// (help, `--version`, mistakes) is parsed again against the whole tree, so help and error
/// messages are the same as before.
fn parse(args: Vec<String>) -> Cli {
    match parse_narrow(&args) {
        Some(cli) => cli,
        None => Cli::parse_from(args),
    }
}

fn parse_narrow(args: &[String]) -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let word = command_word(args)?;
    type Augment = fn(clap::Command) -> clap::Command;
    let (name, augment): (&'static str, Augment) = match word {
        "up" => ("up", project::UpArgs::augment_args),
        "create" => ("create", project::CreateArgs::augment_args),
        "down" => ("down", project::DownArgs::augment_args),
        "ps" => ("ps", project::PsArgs::augment_args),
        "run" => ("run", project::RunArgs::augment_args),
        "exec" => ("exec", project::ExecArgs::augment_args),
        "stop" => ("stop", lifecycle::StopArgs::augment_args),
        "restart" => ("restart", lifecycle::StopArgs::augment_args),
        "start" => ("start", lifecycle::ServicesArgs::augment_args),
        "kill" => ("kill", lifecycle::KillArgs::augment_args),
        "rm" => ("rm", lifecycle::RmArgs::augment_args),
        "logs" => ("logs", logs::LogsArgs::augment_args),
        _ => return None,
    };
    let sub = augment(clap::Command::new(name));
    let tree = Global::augment_args(clap::Command::new("berth").disable_help_subcommand(true))
        .subcommand_required(true)
        .subcommand(sub);
    let matches = tree.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let paths = crate::state::Paths::new(cli.global.root.as_deref());
    crate::compose::schema::remember_valid_in(paths.run.join("compose-valid"));
    match cli.global.ansi.as_str() {
        "never" => console::set_colors_enabled(false),
        "always" => console::set_colors_enabled(true),
        _ if std::env::var_os("NO_COLOR").is_some() => console::set_colors_enabled(false),
        _ => {}
    }
    // Processes that enter containers run from a read-only mount of berth (CVE-2019-5736).
    if matches!(cli.command, Command::Shim { .. } | Command::Exec(_))
        && let Err(e) = crate::sys::exeseal::ensure_sealed()
    {
        tracing::warn!("cannot protect /proc/self/exe with a read-only mount: {e}");
    }
    match cli.command {
        Command::Shim { data, run, id } => Ok(crate::engine::shim::main(
            &crate::state::Paths { data, run },
            &id,
        )),
        Command::AutoRemove { data, run, id } => {
            project::auto_remove(&crate::state::Paths { data, run }, &id)
        }
        Command::Version => {
            output::data(&format!("berth version {}", env!("CARGO_PKG_VERSION")));
            Ok(0)
        }
        Command::Images(a) if VIA_COMPOSE.load(std::sync::atomic::Ordering::Relaxed) => {
            project::compose_images(&paths, &cli.global, &a)
        }
        Command::Images(a) => images::images(&paths, &a),
        Command::Image(c) => images::image(&paths, &cli.global, c),
        Command::Load(a) => images::load(&paths, &a),
        Command::Build(a) => build::build(&paths, &cli.global, &a),
        Command::Builder(c) => build::builder(&paths, &c),
        Command::Pull(a) => images::pull(&paths, &cli.global, &a),
        Command::Push(a) => images::push(&paths, &cli.global, &a),
        Command::Tag(a) => images::tag(&paths, &a),
        Command::Login(a) => images::login(&a),
        Command::Logout(a) => images::logout(&a),
        Command::Rmi(a) => images::rm(&paths, &a),
        Command::Save(a) => images::save(&paths, &a),
        Command::Import(a) => images::import(&paths, &a),
        Command::Commit(a) => images::commit(&paths, &a),
        Command::System(c) => images::system(&paths, &c),
        Command::Up(a) => project::up(&paths, &cli.global, &a),
        Command::Create(a) => project::create(&paths, &cli.global, &a),
        Command::Scale(a) => project::scale(&paths, &cli.global, &a),
        Command::Events(a) => events::events(&paths, &cli.global, &a),
        Command::Down(a) => project::down(&paths, &cli.global, &a),
        Command::Ps(a) => project::ps(&paths, &cli.global, &a),
        Command::Logs(a) => project::logs(&paths, &cli.global, &a),
        Command::Exec(a) => project::exec(&paths, &cli.global, &a),
        Command::Run(a) => project::run(&paths, &cli.global, &a),
        Command::Ls(a) => project::ls(&paths, &a),
        Command::Wait(a) => project::wait(&paths, &cli.global, &a),
        Command::Stop(a) => lifecycle::stop(&paths, &cli.global, &a),
        Command::Start(a) => lifecycle::start(&paths, &cli.global, &a),
        Command::Restart(a) => lifecycle::restart(&paths, &cli.global, &a),
        Command::Kill(a) => lifecycle::kill(&paths, &cli.global, &a),
        Command::Rm(a) => lifecycle::rm(&paths, &cli.global, &a),
        Command::Pause(a) => lifecycle::pause(&paths, &cli.global, &a, true),
        Command::Unpause(a) => lifecycle::pause(&paths, &cli.global, &a, false),
        Command::Top(a) => lifecycle::top(&paths, &cli.global, &a),
        Command::Cp(a) => lifecycle::cp(&paths, &cli.global, &a),
        Command::Inspect(a) => lifecycle::inspect(&paths, &cli.global, &a),
        Command::Port(a) => network::port(&paths, &cli.global, &a),
        Command::Network(c) => network::network(&paths, c),
        Command::Volume(c) => volume::volume(&paths, c),
        Command::Volumes(a) => volume::volumes(&paths, &cli.global, &a),
        Command::Config(a) => config::run(&a, project::load_options(&cli.global)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    /// The narrow parse gives what the whole tree gives, and leaves to it what it cannot parse.
    #[test]
    fn narrow_parse_is_the_full_parse() {
        for line in [
            "berth up -d",
            "berth -p x up -d --wait --scale a=2 a b",
            "berth --root /r --progress plain run --rm -e A=1 -v /a:/b bb sh -c true",
            "berth run --rm bb true --x -y",
            "berth exec -T -u 1 web ls -l",
            "berth down -v -t 0 --remove-orphans",
            "berth -f a.yml -f b.yml ps -q --all",
            "berth stop -t 3 a",
            "berth restart a",
            "berth start a b",
            "berth kill -s KILL a",
            "berth rm -f -s",
            "berth logs -f --tail 3 -t a",
            "berth create --pull never --force-recreate a",
            "berth --ansi never up --abort-on-container-exit --exit-code-from a",
        ] {
            let args = v(line);
            let narrow = parse_narrow(&args).unwrap_or_else(|| panic!("{line}: no narrow parse"));
            let full = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{narrow:?}"), format!("{full:?}"), "{line}");
        }
        for line in [
            "berth up --help",
            "berth run",
            "berth up --no-such-flag",
            "berth --version",
            "berth images",
            "berth down --rmi",
        ] {
            assert!(parse_narrow(&v(line)).is_none(), "{line}");
        }
    }

    #[test]
    fn compose_prefix_is_dropped() {
        assert_eq!(strip_compose(v("berth compose up -d")), v("berth up -d"));
        assert_eq!(
            strip_compose(v("berth -p x compose ps")),
            v("berth -p x ps")
        );
        assert_eq!(strip_compose(v("berth up compose")), v("berth up compose"));
    }
}
