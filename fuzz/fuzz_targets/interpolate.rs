//! Interpolation and variable extraction on arbitrary templates.
#![no_main]
use berth::compose::interpolate::{Env, extract_variables, interpolate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: Env = [("A", "a"), ("E", ""), ("JSON", "{\"j\":1}")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = interpolate(text, &env, &mut Vec::new());
    extract_variables(text, &mut Default::default());
});
