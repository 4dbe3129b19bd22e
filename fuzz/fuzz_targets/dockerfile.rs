//! Fuzzes the Dockerfile parser and variable expansion: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(df) = aos_image::dockerfile::parse(&text) {
        for ins in &df.instructions {
            assert!(ins.line >= 1);
        }
    }
    let vars = |name: &str| (name == "A").then(|| "value".to_owned());
    for word in aos_image::dockerfile::split_raw(&text, '\\') {
        let _ = aos_image::dockerfile::expand_word(&word, &vars, '\\');
    }
});
