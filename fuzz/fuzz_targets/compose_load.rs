//! The whole loader on one file given as `-f -`: YAML, interpolation, schema, merge, model.
#![no_main]
use berth::compose::{LoadOptions, load, yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = yaml::parse(text);
    // References to other files would make the fuzzer read the host's files.
    if ["file", "include", "extends", "env_file", "label_file"]
        .iter()
        .any(|k| text.contains(k))
    {
        return;
    }
    let opts = LoadOptions {
        files: vec!["-".into()],
        stdin_content: Some(text.to_string()),
        working_dir: "/nonexistent-berth-fuzz".into(),
        project_name: Some("fuzz".into()),
        ..Default::default()
    };
    let _ = load(&opts);
});
