//! Image references: any input parses or fails with an error, never panics; a parsed reference
//! prints in a form that parses back to the same reference (full and short display).
#![no_main]
use berth::engine::image::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = Reference::parse(text) else {
        return;
    };
    let full = r.to_string();
    assert_eq!(Reference::parse(&full).as_ref(), Ok(&r), "{text:?} -> {full:?}");
    let short = r.short();
    assert_eq!(Reference::parse(&short).as_ref(), Ok(&r), "{text:?} -> {short:?}");
    let _ = (r.repository(), r.short_name());
});
