//! The `.env` parser on arbitrary text.
#![no_main]
use berth::compose::dotenv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dotenv::parse(text, &|k| (k == "HOME").then(|| "/root".to_string()));
});
