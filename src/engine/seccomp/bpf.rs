//! A container's seccomp filter, compiled once and loaded as a ready BPF program.
//!
//! libcontainer compiles the OCI `linux.seccomp` object with libseccomp inside every
//! container's init, on every start: for Docker's profile and the three x86 ABIs that is about
//! 9 ms of CPU per container, a fifth of all the CPU of a 50-service `up`. The program only
//! depends on the filter and the libseccomp release, so berth compiles it once and keeps it
//! under the run root (`run/seccomp/<key>.bpf`, the key a hash of both). The shim hands the
//! program to the container's init, which loads it with `seccomp(2)` just before `exec`
//! ([`LoadFilter`]).
//!
//! Without `no_new_privileges` a filter can only be loaded with `CAP_SYS_ADMIN`, which the init
//! has dropped by then. So the spec libcontainer runs keeps `CAP_SYS_ADMIN` in the init's
//! effective and permitted sets (never in its bounding set), and [`LoadFilter`] drops it right
//! after the load, before `exec`. Even a missed drop could not leak it: the capability is not
//! in the bounding set, so no `exec` keeps it (root's new permitted set is bounded by it, any
//! other user's is its ambient set, which is empty).
use crate::state::Paths;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, Spec,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("compiling the seccomp filter: {0}")]
    Compile(#[from] libseccomp::error::SeccompError),
    #[error("seccomp filter {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BpfError + '_ {
    move |source| BpfError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A compiled filter: the BPF instructions and the `seccomp(2)` flags to load them with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub flags: u32,
    pub code: Vec<u8>,
}

impl Program {
    /// The form kept in a container's directory: the flags (4 bytes, little endian), then the
    /// instructions.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.flags.to_le_bytes().to_vec();
        out.extend_from_slice(&self.code);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Program> {
        let (flags, code) = bytes.split_first_chunk::<4>()?;
        (!code.is_empty() && code.len().is_multiple_of(8)).then(|| Program {
            flags: u32::from_le_bytes(*flags),
            code: code.to_vec(),
        })
    }

    /// Installs the filter on the calling thread.
    pub fn load(&self) -> std::io::Result<()> {
        crate::sys::seccomp::load_filter(&self.code, self.flags)
    }
}

/// The compiled program of `filter`, from the cache or compiled now (and cached). `None` when
/// the filter cannot be loaded as a plain program: a user-notify action needs the listener fd
/// that only libcontainer's own load passes on.
pub fn program(paths: &Paths, filter: &LinuxSeccomp) -> Result<Option<Cached>, BpfError> {
    let Some(flags) = load_flags(filter) else {
        return Ok(None);
    };
    let key = cache_key(filter);
    let dir = paths.data.join("seccomp");
    let path = dir.join(format!("{key}.bpf"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            if let Some(program) = Program::from_bytes(&bytes).filter(|p| p.flags == flags) {
                return Ok(Some(Cached { program, path }));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&path)(e)),
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // One compiles, the others wait and read what it wrote: the first `up` on a new state
    // root starts its containers' shims together, and each compiling the filter itself (about
    // 9 ms of CPU) made the first `up` of 50 services spend a second CPU-second there.
    let lock_path = dir.join(format!(".{key}.lock"));
    let _lock = crate::state::Lock::acquire(&lock_path).map_err(|e| BpfError::Io {
        path: lock_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if let Ok(bytes) = std::fs::read(&path)
        && let Some(program) = Program::from_bytes(&bytes).filter(|p| p.flags == flags)
    {
        return Ok(Some(Cached { program, path }));
    }
    // Written whole under a name of this process, then renamed: a reader without the lock
    // sees either nothing or a complete program.
    let tmp = dir.join(format!(".{}.{key}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let compiled = compile(filter).and_then(|ctx| ctx.export_bpf(&file));
    drop(file);
    if let Err(e) = compiled {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    let code = std::fs::read(&tmp).map_err(io(&tmp))?;
    let program = Program { flags, code };
    std::fs::write(&tmp, program.to_bytes()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(Some(Cached { program, path }))
}

/// A compiled filter and where it is kept: `data/seccomp/<key>.bpf`, under the data root
/// beside the containers, so that a container's copy can be a hard link.
pub struct Cached {
    pub program: Program,
    pub path: PathBuf,
}

/// The cache key: the filter as JSON, the libseccomp release that compiles it and the running
/// kernel (libseccomp asks the kernel which actions it has, and compiles accordingly).
fn cache_key(filter: &LinuxSeccomp) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(filter).unwrap_or_default());
    if let Ok(v) = libseccomp::ScmpVersion::current() {
        h.update(format!("\nlibseccomp {}.{}.{}", v.major, v.minor, v.micro));
    }
    if let Ok(u) = nix::sys::utsname::uname() {
        h.update(b"\nkernel ");
        h.update(u.release().as_encoded_bytes());
        h.update(u.version().as_encoded_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The `seccomp(2)` flags the filter asks for; `None` if it uses user notification.
fn load_flags(filter: &LinuxSeccomp) -> Option<u32> {
    let notify = |a: LinuxSeccompAction| a == LinuxSeccompAction::ScmpActNotify;
    if notify(filter.default_action())
        || filter
            .syscalls()
            .iter()
            .flatten()
            .any(|s| notify(s.action()))
    {
        return None;
    }
    let mut flags = 0u32;
    for f in filter.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
        } as u32;
    }
    Some(flags)
}

/// The libseccomp filter for an OCI seccomp object, with the OCI runtime spec's meaning (as
/// runc and libcontainer read it): rules whose action is the default one add nothing; a
/// syscall libseccomp does not know is skipped; conditions on distinct arguments are ANDed in
/// one rule, several conditions on the same argument make one rule each.
fn compile(filter: &LinuxSeccomp) -> Result<ScmpFilterContext, libseccomp::error::SeccompError> {
    let default = action(filter.default_action(), filter.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default)?;
    for a in filter.architectures().iter().flatten() {
        ctx.add_arch(arch(*a))?;
    }
    // No PR_SET_NO_NEW_PRIVS as a side effect of the load: that is the spec's own setting.
    ctx.set_ctl_nnp(false)?;
    for rule in filter.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
            .collect();
        let mut seen = HashSet::new();
        let one_rule = rule.args().iter().flatten().all(|a| seen.insert(a.index()));
        for name in rule.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if conds.is_empty() {
                ctx.add_rule(act, nr)?;
            } else if one_rule {
                ctx.add_rule_conditional(act, nr, &conds)?;
            } else {
                for c in &conds {
                    ctx.add_rule_conditional(act, nr, std::slice::from_ref(c))?;
                }
            }
        }
    }
    Ok(ctx)
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.clamp(0, 0xffff) as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    }
}

fn op(o: LinuxSeccompOperator, mask: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The last step of a container process before `exec`: load the filter, drop the
/// `CAP_SYS_ADMIN` that was kept only for that load, then exec as libcontainer would.
#[derive(Clone, Default)]
pub struct LoadFilter {
    /// The compiled filter.
    pub program: Option<Arc<Program>>,
    /// A filter to compile and load in place (a container created before filters were
    /// compiled ahead).
    pub spec_filter: Option<LinuxSeccomp>,
    /// Drop `CAP_SYS_ADMIN` from the effective and permitted sets after the load.
    pub drop_sys_admin: bool,
}

impl Executor for LoadFilter {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(p) = &self.program {
            p.load()
                .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        } else if let Some(f) = &self.spec_filter {
            libcontainer::seccomp::initialize_seccomp(f)
                .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        }
        if self.drop_sys_admin {
            for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
                caps::drop(None, set, caps::Capability::CAP_SYS_ADMIN).map_err(|e| {
                    ExecutorError::Other(format!("dropping CAP_SYS_ADMIN after seccomp: {e}"))
                })?;
            }
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

/// The spec libcontainer starts the container from, and the executor that ends its init.
///
/// When the filter of `spec` (the container's spec) compiles to a plain program, the program
/// is kept in the container's directory (for `exec` and healthchecks), and the spec given to
/// libcontainer has no filter (the init loads the program instead) and, when
/// `no_new_privileges` is off, keeps `CAP_SYS_ADMIN` in the effective and permitted sets for
/// that load. It is never in the bounding set, which is how `exec` tells it apart.
pub fn prepare_launch(
    paths: &Paths,
    dir: &Path,
    spec: &Spec,
) -> Result<(Spec, LoadFilter), BpfError> {
    let keep = container_file(dir);
    let filter = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let program = match &filter {
        Some(f) => program(paths, f)?,
        None => None,
    };
    match std::fs::remove_file(&keep) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&keep)(e)),
        _ => {}
    }
    let Some(Cached { program, path }) = program else {
        return Ok((spec.clone(), LoadFilter::default()));
    };
    // A link to the cached program allocates no inode; a copy where links fail.
    if std::fs::hard_link(&path, &keep).is_err() {
        std::fs::write(&keep, program.to_bytes()).map_err(io(&keep))?;
    }
    let mut launch = spec.clone();
    if let Some(mut linux) = launch.linux().clone() {
        linux.set_seccomp(None);
        launch.set_linux(Some(linux));
    }
    let mut drop_sys_admin = false;
    let nnp = spec.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true);
    if let Some(mut process) = launch.process().clone().filter(|_| !nnp)
        && let Some(mut c) = process.capabilities().clone()
    {
        let admin = oci_spec::runtime::Capability::SysAdmin;
        let mut effective = c.effective().clone().unwrap_or_default();
        let mut permitted = c.permitted().clone().unwrap_or_default();
        if !effective.contains(&admin) && !permitted.contains(&admin) {
            effective.insert(admin);
            permitted.insert(admin);
            c.set_effective(Some(effective));
            c.set_permitted(Some(permitted));
            process.set_capabilities(Some(c));
            launch.set_process(Some(process));
            drop_sys_admin = true;
        }
    }
    Ok((
        launch,
        LoadFilter {
            program: Some(Arc::new(program)),
            spec_filter: None,
            drop_sys_admin,
        },
    ))
}

/// The capabilities of a process started beside a container's init: the init's as given to
/// libcontainer, less what is outside the bounding set (the `CAP_SYS_ADMIN` that
/// [`prepare_launch`] adds only for the init's filter load).
pub fn exec_capabilities(
    mut c: oci_spec::runtime::LinuxCapabilities,
) -> oci_spec::runtime::LinuxCapabilities {
    let bounding = c.bounding().clone().unwrap_or_default();
    let within = |set: &Option<oci_spec::runtime::Capabilities>| {
        set.as_ref()
            .map(|s| s.intersection(&bounding).copied().collect())
    };
    let (effective, permitted) = (within(c.effective()), within(c.permitted()));
    c.set_effective(effective);
    c.set_permitted(permitted);
    c
}

/// The executor of a process started in a running container (`exec`, healthchecks): its
/// container's compiled filter, or for a container started before filters were compiled
/// ahead, the filter of its spec.
pub fn for_exec(dir: &Path, spec: &Spec) -> Result<LoadFilter, BpfError> {
    let keep = container_file(dir);
    match std::fs::read(&keep) {
        Ok(bytes) => {
            let program = Program::from_bytes(&bytes).ok_or_else(|| {
                io(&keep)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a seccomp program",
                ))
            })?;
            Ok(LoadFilter {
                program: Some(Arc::new(program)),
                ..LoadFilter::default()
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LoadFilter {
            spec_filter: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            ..LoadFilter::default()
        }),
        Err(e) => Err(io(&keep)(e)),
    }
}

/// Where a container keeps its compiled filter (for `exec` and healthchecks).
pub fn container_file(dir: &Path) -> PathBuf {
    dir.join("seccomp.filter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_round_trips_through_its_file_form() {
        let p = Program {
            flags: 1,
            code: vec![7; 16],
        };
        assert_eq!(Program::from_bytes(&p.to_bytes()), Some(p));
        assert_eq!(Program::from_bytes(&[0, 0, 0, 0, 1, 2]), None);
        assert_eq!(Program::from_bytes(&[0, 0]), None);
    }

    #[test]
    fn notify_filters_are_left_to_libcontainer() {
        let mut f = super::super::default_profile(&super::super::Target {
            caps: &HashSet::new(),
            arch: "x86_64",
            kernel: (6, 1),
        });
        assert_eq!(load_flags(&f), Some(0));
        f.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert_eq!(load_flags(&f), None);
    }

    #[test]
    fn the_default_profile_compiles_once_and_is_then_read_from_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(root.path()));
        let f = default_filter();
        let first = program(&paths, &f).unwrap().unwrap().program;
        assert!(first.code.len() > 800, "{} bytes", first.code.len());
        assert_eq!(programs(&paths).len(), 1);
        assert_eq!(program(&paths, &f).unwrap().unwrap().program, first);
    }

    /// Docker's profile for this machine, with no capabilities added.
    fn default_filter() -> LinuxSeccomp {
        super::super::default_profile(&super::super::Target {
            caps: &HashSet::new(),
            arch: std::env::consts::ARCH,
            kernel: super::super::running_kernel(),
        })
    }

    /// The cached programs (not the lock files, nor a compile's temporary file).
    fn programs(paths: &Paths) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(paths.data.join("seccomp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect()
    }

    /// Shims started together on a new state root (the first `up`) get one program, compiled
    /// by one of them while the others wait for it.
    #[test]
    fn concurrent_first_uses_share_one_compile() {
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(root.path()));
        let f = default_filter();
        let got: Vec<Program> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| program(&paths, &f).unwrap().unwrap().program))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|p| *p == got[0]));
        assert_eq!(programs(&paths).len(), 1);
    }
}
