//! Remote references (`include`, `-f`, `extends.file`): any input is a local path, a git
//! reference or an error, never a panic; a reference's remote carries neither its query nor
//! its fragment, and a folder from the fragment is relative and cannot climb out.
#![no_main]
use berth::compose::remote::{is_remote, parse_git_ref};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = is_remote(text);
    let Some(Ok(r)) = parse_git_ref(text) else {
        return;
    };
    assert!(!r.remote.contains('#') && !r.remote.contains('?'), "{text:?}: {r:?}");
    if !text.contains('?') {
        assert!(!r.subdir.starts_with('/'), "{text:?}: {r:?}");
        assert!(!r.subdir.split('/').any(|c| c == ".."), "{text:?}: {r:?}");
    }
});
