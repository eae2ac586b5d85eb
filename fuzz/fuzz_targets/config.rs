//! signerd's config from any TOML text and any environment values: `FileConfig` deserializes
//! or says why, `resolve` answers settings or errors (never panics), and
//! `FileConfig::load` overlays environment values of any shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signerd::config::FileConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line feeds the environment overlay, the whole text the file.
    let env_value = text.lines().next().unwrap_or("").to_owned();
    if let Ok(config) = toml::from_str::<FileConfig>(text) {
        let _ = config.resolve(true);
        let _ = config.resolve(false);
    }
    let toggle = text.len();
    let from_env = FileConfig::load(None, |var| {
        // Every other variable, so fields combine differently from input to input.
        (var.len() % 2 == toggle % 2).then(|| env_value.clone())
    });
    if let Ok(config) = from_env {
        let _ = config.resolve(true);
        let _ = config.resolve(false);
    }
});
