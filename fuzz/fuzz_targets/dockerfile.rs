//! Fuzzes the Dockerfile parser and the shell-word expander: any input must parse or fail with
//! an error, never panic, and every instruction's line must lie inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    if let Ok(df) = berth::engine::build::parser::parse(text, "Dockerfile") {
        for i in &df.instructions {
            assert!(i.line >= 1 && i.line <= lines);
            let _ = i.display();
        }
    }
    let env = |k: &str| (k == "A").then(|| "a b".to_string());
    let _ = berth::engine::build::shell::expand_words(text, '\\', &env);
    let _ = berth::engine::build::shell::expand_word(text, '`', &env);
});
