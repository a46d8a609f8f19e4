//! Remote `include` resources, as docker compose resolves them: a git reference
//! (`https://host/repo.git#ref:subdir`, `git@host:repo.git#ref`, `ssh://…`, `git://…`,
//! `github.com/owner/repo`) is fetched with the `git` binary into a cache, one checkout per
//! commit, and the include then reads a local file. `oci://` artifacts are refused with a hint.
//!
//! The design decision to know: a checkout is keyed by the commit the reference resolves to
//! (`git ls-remote`), is made in a temporary folder and renamed into place, so a crash never
//! leaves a half-made checkout that a later load would trust; a reference that is already a
//! full commit id is served from the cache without touching the network.
use super::interpolate::Env;
use super::loader::DEFAULT_FILES;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// `COMPOSE_EXPERIMENTAL_GIT_REMOTE=false` turns git includes off, as in docker compose.
pub const GIT_REMOTE_ENABLED: &str = "COMPOSE_EXPERIMENTAL_GIT_REMOTE";

/// A git reference, split as BuildKit's `ParseGitRef` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What `git` is given: the URL without its `#fragment`.
    pub remote: String,
    /// A branch, tag or commit; empty means the remote's default branch (`HEAD`).
    pub reference: String,
    /// A folder inside the repository; empty means its root.
    pub subdir: String,
}

/// Whether `path` names a remote resource (git or OCI) rather than a local file.
pub fn is_remote(path: &str) -> bool {
    path.starts_with("oci://") || parse_git_ref(path).is_some()
}

/// Splits a git reference as docker compose does (BuildKit's `dfgitutil.ParseGitRef`):
/// `None` when `s` is not one (a local path, or an unsupported scheme such as `file://`);
/// an error when it is one with a bad query.
///
/// Two spellings name the ref and the folder: the fragment `#ref:subdir` (the folder made
/// relative and free of `..`, as `path.Join("/", subdir)` makes it), and the query
/// `?ref=R&subdir=D`, `?branch=B` (`refs/heads/B`), `?tag=T` (`refs/tags/T`). Neither the query
/// nor the fragment is part of the URL given to git. The query keys BuildKit knows and docker
/// compose does not use (`checksum`, `commit`, `keep-git-dir`, `submodules`, `mtime`,
/// `fetch-by-commit`) are checked and ignored; any other key is an error.
pub fn parse_git_ref(s: &str) -> Option<Result<GitRef, String>> {
    if s.starts_with("./") || s.starts_with("../") {
        return None;
    }
    let (url, fragment) = s.split_once('#').unwrap_or((s, ""));
    let (url, query) = url.split_once('?').unwrap_or((url, ""));
    let remote = if let Some(rest) = url.strip_prefix("github.com/") {
        format!("https://github.com/{rest}")
    } else if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "git" | "ssh") || rest.is_empty() {
            return None;
        }
        // An HTTP(S) URL is a git reference only with the `.git` suffix.
        if scheme.starts_with("http") && !url.ends_with(".git") {
            return None;
        }
        url.to_string()
    } else if scp_style(url) {
        url.to_string()
    } else {
        return None;
    };
    let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
    let mut r = GitRef {
        remote,
        reference: reference.to_string(),
        subdir: if fragment.is_empty() {
            String::new()
        } else {
            rooted_clean(subdir)
        },
    };
    Some(apply_query(&mut r, query).map(|()| r))
}

/// `path.Join("/", s)` without its leading `/`: `..` cannot climb above the root.
fn rooted_clean(s: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// `%XX` and `+` decoding of a query component, as Go's `url.ParseQuery` does.
fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid URL escape in query {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query {s:?} is not UTF-8"))
}

/// BuildKit's `loadQuery` (v0.32), for the keys docker compose uses.
fn apply_query(r: &mut GitRef, query: &str) -> Result<(), String> {
    if query.is_empty() {
        return Ok(());
    }
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err(format!("invalid semicolon separator in query {query:?}"));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (query_unescape(k)?, query_unescape(v)?);
        match values.iter_mut().find(|(key, _)| *key == k) {
            Some((_, vs)) => vs.push(v),
            None => values.push((k, vec![v])),
        }
    }
    let (mut tag, mut branch) = (String::new(), String::new());
    for (k, v) in values {
        if v.len() > 1 {
            return Err(format!("query {k:?} has multiple values"));
        }
        let v = v.into_iter().next().unwrap_or_default();
        let flag = matches!(
            k.as_str(),
            "submodules" | "keep-git-dir" | "fetch-by-commit"
        );
        if v.is_empty() && !flag {
            return Err(format!("query {k:?} has no value"));
        }
        match k.as_str() {
            "ref" => {
                if !r.reference.is_empty() && r.reference != v {
                    return Err(format!("ref conflicts: {:?} vs {v:?}", r.reference));
                }
                r.reference = v;
            }
            "tag" => tag = v,
            "branch" => branch = v,
            "subdir" => {
                if !r.subdir.is_empty() && r.subdir != v {
                    return Err(format!("subdir conflicts: {:?} vs {v:?}", r.subdir));
                }
                r.subdir = v;
            }
            "checksum" | "commit" => {}
            "submodules" | "keep-git-dir" | "fetch-by-commit" => {
                if !v.is_empty() && parse_go_bool(&v).is_none() {
                    return Err(format!("invalid {k} value: {v:?}"));
                }
            }
            "mtime" => {
                if !matches!(v.as_str(), "checkout" | "commit") {
                    return Err(format!(
                        "invalid mtime value: {v:?} (must be \"checkout\" or \"commit\")"
                    ));
                }
            }
            _ => return Err(format!("unexpected query {k:?}")),
        }
    }
    if !tag.is_empty() {
        if !tag.starts_with("refs/tags/") {
            tag = format!("refs/tags/{tag}");
        }
        if !r.reference.is_empty() && r.reference != tag {
            return Err(format!("ref conflicts: {:?} vs {tag:?}", r.reference));
        }
        r.reference = tag.clone();
    }
    if !branch.is_empty() {
        if !tag.is_empty() {
            return Err("branch conflicts with tag".into());
        }
        if !branch.starts_with("refs/heads/") {
            branch = format!("refs/heads/{branch}");
        }
        if !r.reference.is_empty() && r.reference != branch {
            return Err(format!("ref conflicts: {:?} vs {branch:?}", r.reference));
        }
        r.reference = branch;
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `user@host:path`, the scp-like form ssh understands (BuildKit's pattern:
/// `^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*)`).
fn scp_style(url: &str) -> bool {
    let Some((user, rest)) = url.split_once('@') else {
        return false;
    };
    let Some((host, _path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where checkouts go when the caller names no cache: docker compose's own,
/// `$XDG_CACHE_HOME/docker-compose` or `~/.cache/docker-compose`.
pub fn default_cache(env: &Env) -> Option<PathBuf> {
    if let Some(x) = env.get("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(Path::new(x).join("docker-compose"));
    }
    env.get("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(h).join(".cache/docker-compose"))
}

/// Resolves a remote include path to the local compose file to read.
pub fn resolve(path: &str, cache: Option<&Path>, env: &Env) -> Result<PathBuf, String> {
    if path.starts_with("oci://") {
        return Err(format!(
            "{path}: OCI artifacts are not supported as include sources yet; include a git \
             repository (https://host/repo.git#ref:dir) or a local file instead"
        ));
    }
    let r = match parse_git_ref(path) {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("{path}: {e}")),
        None => return Err(format!("{path} is not a git reference")),
    };
    if let Some(v) = env.get(GIT_REMOTE_ENABLED)
        && matches!(v.to_ascii_lowercase().as_str(), "0" | "f" | "false")
    {
        return Err(format!(
            "{path}: git remote resources are disabled by {GIT_REMOTE_ENABLED}={v}"
        ));
    }
    let subdir = checked_subdir(&r.subdir)?;
    let cache = match cache {
        Some(c) => c.to_path_buf(),
        None => default_cache(env).ok_or("no cache folder for git includes: set HOME")?,
    };
    let commit = if is_commit(&r.reference) {
        r.reference.clone()
    } else {
        ls_remote(&r)?
    };
    let checkout = cache.join(&commit);
    if !checkout.is_dir() {
        fetch(&r, &commit, &cache, &checkout)?;
    }
    let local = checkout.join(subdir);
    if local.is_dir() {
        return DEFAULT_FILES
            .iter()
            .map(|n| local.join(n))
            .find(|f| f.is_file())
            .ok_or_else(|| {
                format!(
                    "{path}: no compose file ({}) in {}",
                    DEFAULT_FILES.join(", "),
                    if r.subdir.is_empty() {
                        "the repository's root".to_string()
                    } else {
                        format!("folder {:?} of the repository", r.subdir)
                    }
                )
            });
    }
    if local.is_file() {
        return Ok(local);
    }
    Err(format!(
        "{path}: {:?} does not exist in the repository",
        r.subdir
    ))
}

/// The subdirectory as a relative path that stays inside the checkout.
fn checked_subdir(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => {
                return Err(format!(
                    "git subdirectory {s:?} must be a relative path inside the repository"
                ));
            }
        }
    }
    Ok(out)
}

/// `git`, never prompting for a password or an ssh passphrase.
fn git() -> Command {
    let mut c = Command::new("git");
    if std::env::var_os("GIT_TERMINAL_PROMPT").is_none() {
        c.env("GIT_TERMINAL_PROMPT", "0");
    }
    if std::env::var_os("GIT_SSH").is_none() && std::env::var_os("GIT_SSH_COMMAND").is_none() {
        c.env(
            "GIT_SSH_COMMAND",
            "ssh -o ControlMaster=no -o BatchMode=yes",
        );
    }
    c.stdin(Stdio::null());
    c
}

fn run(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| {
        format!("{what}: cannot run git: {e} (install git to include remote repositories)")
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("{what}: {}", err.trim()))
    }
}

/// The commit a branch or tag names on the remote.
fn ls_remote(r: &GitRef) -> Result<String, String> {
    let reference = if r.reference.is_empty() {
        "HEAD"
    } else {
        &r.reference
    };
    let mut cmd = git();
    cmd.args(["ls-remote", "--exit-code", "--", &r.remote, reference]);
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run git: {e} (install git to include remote repositories)"))?;
    if out.status.code() == Some(2) {
        return Err(format!("repository {} has no ref {reference:?}", r.remote));
    }
    if !out.status.success() {
        return Err(format!(
            "failed to access repository {}: {}",
            r.remote,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text.get(..40).unwrap_or_default();
    if !is_commit(sha) {
        return Err(format!("unexpected output of git ls-remote: {text:?}"));
    }
    Ok(sha.to_string())
}

/// A shallow checkout of `commit`, made beside its final place and renamed into it.
fn fetch(r: &GitRef, commit: &str, cache: &Path, checkout: &Path) -> Result<(), String> {
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("creating the git cache {}: {e}", cache.display()))?;
    let tmp = cache.join(format!(".{commit}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        let mut init = git();
        init.args(["init", "-q", "--"]).arg(&tmp);
        run(init, "git init")?;
        let mut fetch = git();
        fetch
            .current_dir(&tmp)
            .args(["fetch", "-q", "--depth=1", "--", &r.remote, commit]);
        run(fetch, &format!("fetching {commit} from {}", r.remote))?;
        let mut co = git();
        co.current_dir(&tmp)
            .args(["-c", "advice.detachedHead=false", "checkout", "-q", commit]);
        run(co, &format!("checking out {commit}"))?;
        std::fs::rename(&tmp, checkout).map_err(|e| format!("{}: {e}", checkout.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    // Another load may have won the race to the same commit: its checkout is as good.
    if result.is_err() && checkout.is_dir() {
        return Ok(());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(remote: &str, reference: &str, subdir: &str) -> Option<Result<GitRef, String>> {
        Some(Ok(GitRef {
            remote: remote.into(),
            reference: reference.into(),
            subdir: subdir.into(),
        }))
    }

    #[test]
    fn query_forms_are_read_as_buildkit_0_32_reads_them() {
        let repo = "https://github.com/foo/bar.git";
        assert_eq!(
            parse_git_ref(&format!("{repo}?ref=main&subdir=deploy/dev")),
            r(repo, "main", "deploy/dev")
        );
        assert_eq!(
            parse_git_ref(&format!("{repo}?branch=dev")),
            r(repo, "refs/heads/dev", "")
        );
        assert_eq!(
            parse_git_ref(&format!("{repo}?tag=v1.2")),
            r(repo, "refs/tags/v1.2", "")
        );
        // The same ref on both sides is no conflict; checksum and the checkout flags are
        // accepted and left to BuildKit.
        assert_eq!(
            parse_git_ref(&format!(
                "{repo}?ref=v1&checksum=abc&submodules&keep-git-dir=false#v1"
            )),
            r(repo, "v1", "")
        );
        assert_eq!(
            parse_git_ref("git@github.com:foo/bar.git?subdir=a%20b#main"),
            r("git@github.com:foo/bar.git", "main", "a b")
        );
        // A fragment's folder is made relative, `..` stopping at the root.
        assert_eq!(
            parse_git_ref(&format!("{repo}#main:../x/./y/")),
            r(repo, "main", "x/y")
        );
        for (query, error) in [
            ("ref=a#b", "ref conflicts"),
            ("subdir=a#:b", "subdir conflicts"),
            ("tag=a&branch=b", "branch conflicts with tag"),
            ("ref=a&ref=b", "multiple values"),
            ("ref=", "has no value"),
            ("depth=1", "unexpected query \"depth\""),
            ("mtime=now", "invalid mtime value"),
            ("submodules=maybe", "invalid submodules value"),
        ] {
            let e = parse_git_ref(&format!("{repo}?{query}"))
                .unwrap()
                .unwrap_err();
            assert!(e.contains(error), "{query}: {e}");
        }
        // A query does not make an HTTP URL without `.git` a repository.
        assert_eq!(
            parse_git_ref("https://example.com/compose.yaml?ref=x"),
            None
        );
    }

    #[test]
    fn git_references_are_split_as_buildkit_does() {
        assert_eq!(
            parse_git_ref("https://github.com/foo/bar.git#baz/qux:quux/quuz"),
            r("https://github.com/foo/bar.git", "baz/qux", "quux/quuz")
        );
        assert_eq!(
            parse_git_ref("git@github.com:docker/compose.git#main"),
            r("git@github.com:docker/compose.git", "main", "")
        );
        assert_eq!(
            parse_git_ref("github.com/foo/bar#:dir"),
            r("https://github.com/foo/bar", "", "dir")
        );
        assert_eq!(
            parse_git_ref("git://127.0.0.1:9418/repo.git"),
            r("git://127.0.0.1:9418/repo.git", "", "")
        );
        assert_eq!(
            parse_git_ref("ssh://git@host/repo#v1"),
            r("ssh://git@host/repo", "v1", "")
        );
        for local in [
            "compose.yaml",
            "./sub/compose.yaml",
            "../x.yaml",
            "/abs/compose.yaml",
            "https://example.com/compose.yaml",
            "file:///srv/repo.git",
            "oci://docker.io/x/y",
            "C:\\x\\compose.yaml",
        ] {
            assert_eq!(parse_git_ref(local), None, "{local}");
        }
        assert!(is_remote("oci://docker.io/x/y"));
        assert!(!is_remote("dir/compose.yaml"));
    }

    #[test]
    fn subdirectories_stay_inside_the_checkout() {
        assert_eq!(checked_subdir("a/./b"), Ok(PathBuf::from("a/b")));
        assert_eq!(checked_subdir("a/../b"), Ok(PathBuf::from("b")));
        assert!(checked_subdir("../x").is_err());
        assert!(checked_subdir("/etc").is_err());
        assert!(checked_subdir("a/../../x").is_err());
    }

    #[test]
    fn oci_and_disabled_git_are_clear_errors() {
        let e = resolve("oci://registry/x:1", None, &Env::new()).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let env: Env = [(GIT_REMOTE_ENABLED.to_string(), "false".to_string())].into();
        let e = resolve("https://h/r.git", None, &env).unwrap_err();
        assert!(
            e.contains("disabled by COMPOSE_EXPERIMENTAL_GIT_REMOTE"),
            "{e}"
        );
    }
}
