//! Short syntaxes: ports, volumes, devices.
#![no_main]
use berth::compose::model::{parse_device, parse_port, parse_volume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_port(text);
    let _ = parse_volume(text);
    let _ = parse_device(text);
});
