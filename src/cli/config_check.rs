//! `agentapi-proxy config check`: validate and print the effective, redacted configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ConfigSource, FlagOverrides, LoadOptions, load};

pub fn main(config_path: Option<PathBuf>) -> ExitCode {
    let loaded = match load(&LoadOptions::from_process(config_path, FlagOverrides::default())) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    if loaded.source == ConfigSource::Defaults {
        eprintln!(
            "note: no config file given and none in the working directory: built-in defaults"
        );
    }
    match serde_json::to_string_pretty(&loaded.config.redacted_json()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot print the configuration: {error}");
            ExitCode::FAILURE
        }
    }
}
